// The training loop's checkpoint files (reference: train_util.py save, _load_and_sync_parameters,
// _load_ema_parameters, _load_optimizer_state, parse_resume_step_from_filename): their names,
// written by rank 0 atomically, read back on resume by rank 0 and broadcast to the others.
// TrainLoop's load and save members are defined in train_checkpoint.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace idiff {

// "path/to/model012345.pt" -> 12345; 0 when the name has no such number (the reference's
// parse_resume_step_from_filename). A number above kMaxSteps is a ConfigError.
int64_t parse_resume_step_from_filename(const std::string& filename);
// "model012345.pt", "opt012345.pt": `prefix` and the step in six digits at least.
std::string step_checkpoint_name(const std::string& prefix, int64_t step);
// "ema_0.9999_012345.pt": the rate written as Python's str(float) writes it.
std::string ema_checkpoint_name(double rate, int64_t step);
// Python's repr of a float: the shortest decimal that reads back to the same double.
std::string python_float_repr(double v);

}  // namespace idiff
