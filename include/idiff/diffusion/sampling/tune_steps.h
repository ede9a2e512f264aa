// A step schedule fitted to one model and solver: the N timesteps that minimise the
// solver's error against a fine solution of the same sampling problem (the idea of "Align
// Your Steps", Sabour et al. 2024, with a plain derivative-free search instead of their
// KL bound): the first level stays at t_start, the others move in log-SNR.
//
// The search is a coordinate search on the positions p_k = (lambda_k - lambda_start) /
// (lambda(0) - lambda_start) in [0, 1], increasing: each sweep tries moving every free
// level part of the way towards each neighbour and keeps a move that lowers the error,
// then halves the move. It starts from the best of the karras, logsnr, linspace and
// trailing schedules, so the result is never worse than those on the calibration problem.
#pragma once

#include "idiff/diffusion/sampling/step_schedule.h"

#include <functional>
#include <string>
#include <vector>

namespace idiff {

struct TuneOptions {
  int64_t steps = 10;
  double t_start = -1;     // -1: the last timestep
  bool final_zero = true;  // as make_step_schedule
  double sigma_max = 0.0;  // as make_step_schedule: the starting schedules' cap
  int64_t iterations = 6;  // sweeps
};

struct TuneResult {
  StepSchedule schedule;
  double error = 0.0;
  std::string initial_name;  // the fixed schedule the search started from
  double initial_error = 0.0;
  std::vector<std::pair<std::string, double>> fixed;  // every fixed schedule's error
  int64_t evaluations = 0;
};

using ScheduleError = std::function<double(const StepSchedule&)>;
using TuneLog = std::function<void(const std::string&)>;

TuneResult tune_step_schedule(const NoiseSchedule& ns, const TuneOptions& options,
                              const ScheduleError& error_of, const TuneLog& log = {});

}  // namespace idiff
