// consistency_models' karras_sample (cm/karras_diffusion.py): sampling a Karras denoiser
// (EDM or consistency model) with the reference's samplers — heun, euler, ancestral
// (euler_a), dpm, onestep, multistep, progdist — and, as well, any other sampler of the
// engine, all run by the one sampling loop (sample_loop.h) on the Karras levels
// (NoiseSchedule::karras).
//
// x_T is sigma_max times unit noise (in the loop's variance-preserving state, x / alpha of
// the first level); the returned sample is clamped to [-1, 1] as the reference's.
#pragma once

#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/diffusion/sampling/solver.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace idiff {

struct KarrasSampleOptions {
  SolverOptions solver = heun();  // name: a row of sampler_registry.h; churn settings
  int64_t steps = 40;
  std::vector<int64_t> ts;  // multistep: indices of a `steps`-level spacing (step_schedule.h)
  // The spacing of the `steps` levels (step_schedule.h): the reference's rho = 7 "karras", or
  // "logsnr" / "linspace" (uniform in log sigma), "trailing".
  std::string schedule = "karras";
  bool clip_denoised = true;
  DenoisedFn replace_fn;  // zero-shot editing (karras_edit.h): after clipping

  static SolverOptions heun() {
    SolverOptions o;
    o.name = "heun";
    return o;
  }
};

// The levels a Karras denoiser with these sigma_min, sigma_max is sampled on.
NoiseSchedule karras_noise_schedule(const KarrasParams& params);

// The reference's sigmas for `options`: get_sigmas_karras(steps) ending at 0; progdist's
// steps + 1 levels ending at sigma_min; onestep's one step; multistep's ts.
StepSchedule karras_step_schedule(const NoiseSchedule& ns, const KarrasSampleOptions& options);

// The solver of `options` over the model as a Karras denoiser.
std::unique_ptr<Solver> make_karras_solver(const KarrasParams& params, const ModelFn& model,
                                           const KarrasSampleOptions& options);

// The factor from unit noise to x_T in the loop's state: sigma of the solver's first level
// (sigma_max / sqrt(1 + sigma_max^2)), as x_ve = sigma_max z.
double karras_noise_scale(const KarrasParams& params, const Solver& solver);

// karras_sample: x_T from sample.noise or the generator (unit noise, scaled), the loop, then
// the clamp. shape: [N, C, H, W].
at::Tensor karras_sample(const KarrasParams& params, const ModelFn& model, at::IntArrayRef shape,
                         const KarrasSampleOptions& options, const SampleOptions& sample = {},
                         const LoopOptions& loop = {}, const StepCallback& on_step = {});

}  // namespace idiff
