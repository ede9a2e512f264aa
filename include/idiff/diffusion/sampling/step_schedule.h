// Step schedules: the (possibly fractional) timesteps a sampler visits, from the start of
// the reverse process down to where it ends.
//
// A schedule of N steps is N + 1 levels t_0 > t_1 > ... > t_N of the original process
// (noise_levels.h): the model is called at t_0 .. t_{N-1} (once per step by the one-call
// solvers), and t_N is where sampling ends: kCleanLevel, sigma = 0 (the last step returns
// the x_0 prediction, as the reference's DDIM does), or, with final "min", the schedule's
// own last point (the samples keep that level's small noise).
//
// Names: the spacings of Lu et al. / diffusers ("linspace", "leading", "trailing": uniform
// in t with those endpoints, rounded to integers), "karras" (Karras et al. 2022 eq. 5,
// rho = 7, uniform in sigma_k^(1/rho)), "logsnr" (uniform in lambda, Lu et al. 2022), and
// the reference's respacing strings (respace.h, "ddim50", "250", "10,15,20").
#pragma once

#include "idiff/diffusion/sampling/noise_levels.h"

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

struct StepSchedule {
  std::vector<double> levels;  // N + 1 timesteps, decreasing; the last may be kCleanLevel
  int64_t num_steps() const { return static_cast<int64_t>(levels.size()) - 1; }
  bool ends_clean() const { return !levels.empty() && levels.back() == kCleanLevel; }
};

// The names make_step_schedule accepts, for error messages and --help.
const char* step_schedule_names();

// N = steps steps of `name` starting at t_start (the process's last step when < 0), ending
// at sigma 0 (final_zero) or at the schedule's own last point. With sigma_max > 0 and a
// start noisier than that (sigma_k(t_start) > sigma_max, e.g. 2e4 at the last step of a
// cosine schedule), the first step goes from t_start straight to the level of sigma_max and
// the spacing runs from there: at such a start the model's x_0 prediction is the data's mean
// whatever the level, so steps spent above it are wasted. Bad values are ConfigErrors naming
// --schedule, --steps, --t_start or --sigma_max.
StepSchedule make_step_schedule(const NoiseSchedule& ns, const std::string& name, int64_t steps,
                                double t_start = -1, bool final_zero = true, double sigma_max = 0);

// Whether make_step_schedule(ns, *, steps, t_start, *, sigma_max) takes its first step
// straight to sigma_max (t_start resolved: not -1).
bool first_step_capped(const NoiseSchedule& ns, double t_start, int64_t steps, double sigma_max);

// The schedule `--steps N` takes when --schedule and --sigma_max are not given, chosen by
// measurement for the kind of model and N (README, "Sampling accuracy from full noise").
struct ScheduleDefaults {
  std::string name;
  double sigma_max = 0.0;
  std::string why;            // for the log and --help
  std::string sigma_max_why;  // the cap's reason alone (a --schedule given, --sigma_max not)
};
ScheduleDefaults default_schedule(const NoiseSchedule& ns, int64_t steps);

// Every step of the process from t_start down: the integer timesteps below it (a fractional
// t_start first), then sigma 0. The fine solutions of tune-steps and the solver bench.
StepSchedule every_step_schedule(double t_start);

// consistency_models' --ts (stochastic_iterative_sampler): the indices ts (increasing, in
// [0, steps - 1], the last steps - 1) of a Karras spacing of `steps` levels from the top of
// `ns` (sigma_max) down to its bottom (sigma_min); the last index (sigma_min) becomes
// sigma 0, where the consistency model's x_0 is the sample. Bad values are ConfigErrors
// naming --ts and --steps.
StepSchedule consistency_schedule(const NoiseSchedule& ns, const std::vector<int64_t>& ts,
                                  int64_t steps, double rho = 7.0);

// The reference's respacing string over a process of T steps: its kept steps, descending,
// then the clean end.
StepSchedule respacing_schedule(int64_t num_timesteps, const std::string& section_counts);

// Throws ConfigError (naming `what`) unless the levels decrease within [0, T-1], with only
// the last allowed to be kCleanLevel, and there is at least one step.
void check_step_schedule(const StepSchedule& s, int64_t num_timesteps, const std::string& what);

// True when every level is an integer timestep (or the clean end).
bool has_integer_levels(const StepSchedule& s);

// Steps files (`idiff tune-steps` writes them, `idiff sample --steps_file` reads them): JSON
// {"levels": [...], "sampler": ..., "diffusion_steps": T, ...}. `info` is merged in as
// extra keys (a JSON object text, "" for none).
void write_steps_file(const std::string& path, const StepSchedule& s, const std::string& info);
// `sampler`, when given, receives the file's "sampler" ("" when it names none).
StepSchedule read_steps_file(const std::string& path, int64_t num_timesteps,
                             std::string* sampler = nullptr);
// The same for a steps file's text (a server's request); `path` names it in errors.
StepSchedule parse_steps_json(const std::string& text, const std::string& path,
                              int64_t num_timesteps, std::string* sampler = nullptr);

}  // namespace idiff
