#include "idiff/diffusion/sampling/solver.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/respace.h"
#include "idiff/diffusion/sampling/linear_multistep.h"
#include "idiff/diffusion/sampling/sampler_registry.h"

#include <set>

namespace idiff {

int64_t Solver::total_model_calls() const {
  int64_t calls = 0;
  for (int64_t i = 0; i < num_steps(); ++i) calls += model_calls(i);
  return calls;
}

NoiseSchedule noise_schedule_of(const DiffusionParams& params) {
  return NoiseSchedule(DiffusionSchedule(params.betas).alphas_cumprod, params.rescale_timesteps);
}

std::unique_ptr<Solver> make_solver(const SolverOptions& o, const DiffusionParams& params,
                                    const StepSchedule& schedule, const ModelFn& model,
                                    const DenoiserOptions& denoiser_options) {
  // What the model predicts comes from the diffusion, not the caller.
  DenoiserOptions denoiser = denoiser_options;
  denoiser.predict_xstart = params.model_mean_type == ModelMeanType::StartX;
  denoiser.learned_variance = params.model_var_type == ModelVarType::Learned ||
                              params.model_var_type == ModelVarType::LearnedRange;
  const NoiseSchedule ns = noise_schedule_of(params);
  const SamplerRow& row = find_sampler(o.name);
  const bool integer = has_integer_levels(schedule);
  if (row.reference != ReferenceSampler::None && (integer || row.engine == nullptr)) {
    // The engine's checks are make_engine_solver's; the reference's loop checks here.
    check_step_schedule(schedule, ns.num_timesteps(), "the step schedule");
    check_solver_settings(row, o);
    IDIFF_REQUIRE(integer && schedule.ends_clean(), ConfigError, "`sampler` ", row.name,
                  " needs integer timesteps ending at sigma 0 (a respacing string, or `schedule` "
                  "linspace/leading/trailing with `final_sigma` zero)");
    IDIFF_REQUIRE(denoiser.threshold != Threshold::Dynamic, ConfigError, "`sampler` ", row.name,
                  " (the reference's) clips or not: `dynamic_threshold` needs another sampler");
    std::set<int64_t> kept;
    for (size_t i = 0; i + 1 < schedule.levels.size(); ++i) {
      kept.insert(static_cast<int64_t>(schedule.levels[i]));
    }
    IDIFF_REQUIRE(kept.size() >= 2, ConfigError, "`sampler` ", row.name,
                  " (the reference's) needs at least 2 steps (`steps`, `timestep_respacing`), "
                  "got ",
                  kept.size());
    return make_reference_solver(
        SpacedDiffusion(kept, params), model, row.reference == ReferenceSampler::DdimSample, o.eta,
        denoiser.threshold == Threshold::Clip, denoiser.denoised_fn, denoiser.cond_fn);
  }
  IDIFF_REQUIRE(params.model_mean_type != ModelMeanType::PreviousX, ConfigError, "`sampler` ",
                row.name, " needs a model that predicts epsilon or x_0, not x_{t-1}");
  return make_engine_solver(o, ns, schedule, model, denoiser);
}

std::unique_ptr<Solver> make_engine_solver(const SolverOptions& o, const NoiseSchedule& ns,
                                           const StepSchedule& schedule, const ModelFn& model,
                                           const DenoiserOptions& denoiser) {
  check_step_schedule(schedule, ns.num_timesteps(), "the step schedule");
  const SamplerRow& row = find_sampler(o.name);
  check_solver_settings(row, o);
  IDIFF_REQUIRE(row.engine != nullptr, ConfigError, "`sampler` ", row.name,
                " is the reference's Gaussian-diffusion loop; ",
                denoiser.karras ? "a Karras (EDM or consistency) model" : "this model",
                " needs another sampler");
  return row.engine(o, schedule, levels_of(ns, schedule), Denoiser(model, denoiser), ns);
}

}  // namespace idiff
