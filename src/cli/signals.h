// The idiff program's SIGINT/SIGTERM handlers for training: the handler only records the
// request; the loop, asked through its StopCheck, finishes its current step, saves a
// checkpoint and returns (nothing is lost). The library itself installs no handler.
#pragma once

#include <string>

namespace idiff::cli {

// Installs the handlers (idempotent). A second signal of the same kind while a stop is
// already pending restores the default action, so a third Ctrl-C kills a stuck process.
void install_stop_signal_handlers();
// "SIGINT" or "SIGTERM" once one arrived, else "": a TrainLoop StopCheck.
std::string stop_signal_name();

}  // namespace idiff::cli
