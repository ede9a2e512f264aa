// From the sampling flags to a solver of the sampling engine: which solver (--sampler,
// else the reference's ddpm or ddim with --use_ddim), over which steps (--steps_file, else
// --steps of --schedule from --t_start, else the reference's --timestep_respacing), with
// which x_0 thresholding (--clip_denoised, --dynamic_threshold).
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/sampling/repaint.h"
#include "idiff/diffusion/sampling/solver.h"

#include <memory>
#include <optional>
#include <string>

namespace idiff {

struct SamplerSetup {
  SolverOptions solver;
  StepSchedule schedule;
  DenoiserOptions denoiser;   // threshold only: make_solver fills in what the model predicts
  DiffusionParams params;     // the full process
  std::string schedule_name;  // for the log: "karras from t=999", "respacing ddim50", a file
  std::string defaults_note;  // for the log: which defaults --steps took, and why ("": none)
  double sigma_max = 0.0;     // with --steps: the cap of the first step (0: none), as resolved
  // A Karras denoiser (--training_mode edm, consistency_*): its settings, sigma_max as
  // sampled from; the solver runs on its levels and `params` is unused.
  std::optional<KarrasParams> karras;
  // `idiff edit` with an improved-/guided-diffusion model: the solver walks RePaint's path.
  std::optional<RepaintOptions> repaint;
};

// The continuous levels the setup's schedule lives on.
NoiseSchedule noise_schedule_of(const SamplerSetup& setup);

// Bad or conflicting flags are ConfigErrors naming them.
SamplerSetup sampler_setup(const SampleConfig& s, const DiffusionConfig& d);

// The solver of a setup on `model`.
std::unique_ptr<Solver> make_solver(const SamplerSetup& setup, const ModelFn& model);

// "dpmpp_2m, 10 steps (10 model calls), karras from t=999".
std::string describe(const Solver& solver, const SamplerSetup& setup);

}  // namespace idiff
