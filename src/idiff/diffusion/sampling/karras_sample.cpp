#include "idiff/diffusion/sampling/karras_sample.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/sampling/sampler_registry.h"

#include <ATen/ATen.h>

namespace idiff {

NoiseSchedule karras_noise_schedule(const KarrasParams& params) {
  check_karras_params(params);
  return NoiseSchedule::karras(params.sigma_min, params.sigma_max);
}

StepSchedule karras_step_schedule(const NoiseSchedule& ns, const KarrasSampleOptions& o) {
  const SamplerRow& row = find_sampler(o.solver.name);
  if (!o.ts.empty()) {
    IDIFF_REQUIRE(row.fixed_steps == 0 && !row.final_min, ConfigError,
                  "`ts` is for multistep "
                  "(and the samplers that end at sigma 0), not ",
                  row.name);
    return consistency_schedule(ns, o.ts, o.steps);
  }
  const int64_t steps = row.fixed_steps > 0 ? row.fixed_steps : o.steps;
  return make_step_schedule(ns, o.schedule, steps, -1, !row.final_min, 0.0);
}

std::unique_ptr<Solver> make_karras_solver(const KarrasParams& params, const ModelFn& model,
                                           const KarrasSampleOptions& o) {
  const NoiseSchedule ns = karras_noise_schedule(params);
  DenoiserOptions d;
  d.karras = params;
  d.threshold = o.clip_denoised ? Threshold::Clip : Threshold::None;
  d.replace_fn = o.replace_fn;
  return make_engine_solver(o.solver, ns, karras_step_schedule(ns, o), model, d);
}

double karras_noise_scale(const KarrasParams& params, const Solver& solver) {
  return karras_noise_schedule(params).level(solver.schedule().levels.front()).sigma;
}

at::Tensor karras_sample(const KarrasParams& params, const ModelFn& model, at::IntArrayRef shape,
                         const KarrasSampleOptions& options, const SampleOptions& sample,
                         const LoopOptions& loop, const StepCallback& on_step) {
  const auto solver = make_karras_solver(params, model, options);
  const at::Tensor x_T = initial_noise(shape, sample) * karras_noise_scale(params, *solver);
  return run_sampler(*solver, x_T, sample, loop, on_step).clamp(-1, 1);
}

}  // namespace idiff
