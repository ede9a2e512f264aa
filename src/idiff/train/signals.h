// SIGINT/SIGTERM during training: the handler only records the request; the loop
// finishes its current step, saves a checkpoint and returns (nothing is lost).
#pragma once

namespace idiff {

// Installs the handlers (idempotent). A second signal of the same kind while a stop is
// already pending restores the default action, so a third Ctrl-C kills a stuck process.
void install_stop_signal_handlers();
bool stop_requested();
// "SIGINT", "SIGTERM", or "" when none arrived.
const char* stop_signal_name();
// For tests: forget a recorded request.
void reset_stop_request();

}  // namespace idiff
