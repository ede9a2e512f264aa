#include "idiff/diffusion/sampling/solver.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/respace.h"
#include "idiff/diffusion/sampling/linear_multistep.h"

#include <set>

namespace idiff {

const char* solver_names() {
  return "ddpm, ddim, dpmpp_2m, dpmpp_3m, dpmpp_2m_sde, unipc, euler, heun, euler_a";
}

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
  check_step_schedule(schedule, ns.num_timesteps(), "the step schedule");
  const bool reference = o.name == "ddpm" || (o.name == "ddim" && has_integer_levels(schedule));
  if (reference) {
    IDIFF_REQUIRE(has_integer_levels(schedule) && schedule.ends_clean(), ConfigError,
                  "`sampler` ddpm needs integer timesteps ending at sigma 0 (a respacing string, "
                  "or `schedule` linspace/leading/trailing with `final_sigma` zero)");
    IDIFF_REQUIRE(denoiser.threshold != Threshold::Dynamic, ConfigError, "`sampler` ", o.name,
                  " (the reference's) clips or not: `dynamic_threshold` needs another sampler");
    std::set<int64_t> kept;
    for (size_t i = 0; i + 1 < schedule.levels.size(); ++i) {
      kept.insert(static_cast<int64_t>(schedule.levels[i]));
    }
    return make_reference_solver(SpacedDiffusion(kept, params), model, o.name == "ddim", o.eta,
                                 denoiser.threshold == Threshold::Clip, denoiser.denoised_fn,
                                 denoiser.cond_fn);
  }
  IDIFF_REQUIRE(params.model_mean_type != ModelMeanType::PreviousX, ConfigError, "`sampler` ",
                o.name, " needs a model that predicts epsilon or x_0, not x_{t-1}");
  const std::vector<NoiseLevel> levels = levels_of(ns, schedule);
  Denoiser d(model, denoiser);
  const bool lof = o.lower_order_final;
  if (o.name == "ddim") {
    IDIFF_REQUIRE(o.eta >= 0.0, ConfigError, "`eta` must be non-negative, got ", o.eta);
    return make_linear_solver("ddim", schedule, levels, std::move(d), ddim_plan(levels, o.eta));
  }
  if (o.name == "euler") {
    return make_linear_solver("euler", schedule, levels, std::move(d), ddim_plan(levels, 0.0));
  }
  if (o.name == "euler_a") {
    return make_linear_solver("euler_a", schedule, levels, std::move(d),
                              euler_ancestral_plan(levels));
  }
  if (o.name == "heun") return make_heun_solver(schedule, levels, std::move(d));
  if (o.name == "dpmpp_2m" || o.name == "dpmpp_3m" || o.name == "dpmpp_2m_sde") {
    const int64_t order = o.name == "dpmpp_3m" ? 3 : 2;
    return make_linear_solver(o.name, schedule, levels, std::move(d),
                              dpm_solver_pp_plan(levels, order, o.name == "dpmpp_2m_sde", lof));
  }
  if (o.name == "unipc") {
    IDIFF_REQUIRE(o.unipc_variant == "bh1" || o.unipc_variant == "bh2", ConfigError,
                  "`unipc_variant` must be bh1 or bh2, got '", o.unipc_variant, "'");
    return make_linear_solver("unipc", schedule, levels, std::move(d),
                              unipc_plan(levels, o.order, o.unipc_variant == "bh2", lof));
  }
  throw ConfigError(
      str("`sampler`: unknown sampler '", o.name, "' (expected one of ", solver_names(), ")"));
}

}  // namespace idiff
