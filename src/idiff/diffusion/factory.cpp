#include "idiff/diffusion/factory.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/beta_schedule.h"

namespace idiff {

DiffusionParams diffusion_params(const DiffusionConfig& c) {
  IDIFF_REQUIRE(c.diffusion_steps >= 2, ConfigError, "`diffusion_steps` must be at least 2, got ",
                c.diffusion_steps);
  DiffusionParams p;
  p.betas = get_named_beta_schedule(c.noise_schedule, c.diffusion_steps);
  p.loss_type = c.use_kl                   ? LossType::RescaledKL
                : c.rescale_learned_sigmas ? LossType::RescaledMSE
                                           : LossType::MSE;
  p.model_mean_type = c.predict_xstart ? ModelMeanType::StartX : ModelMeanType::Epsilon;
  p.model_var_type = c.learn_sigma   ? ModelVarType::LearnedRange
                     : c.sigma_small ? ModelVarType::FixedSmall
                                     : ModelVarType::FixedLarge;
  p.rescale_timesteps = c.rescale_timesteps;
  return p;
}

SpacedDiffusion create_gaussian_diffusion(const DiffusionConfig& config) {
  const DiffusionParams params = diffusion_params(config);
  std::set<int64_t> use_timesteps;
  if (config.timestep_respacing.empty()) {
    for (int64_t i = 0; i < config.diffusion_steps; ++i) use_timesteps.insert(i);
  } else {
    use_timesteps = space_timesteps(config.diffusion_steps, config.timestep_respacing);
    IDIFF_REQUIRE(use_timesteps.size() >= 2, ConfigError, "`timestep_respacing` '",
                  config.timestep_respacing, "' keeps ", use_timesteps.size(),
                  " step: a diffusion process needs at least 2");
  }
  return SpacedDiffusion(use_timesteps, params);
}

bool is_consistency(const std::string& training_mode) {
  return training_mode == "consistency_distillation" || training_mode == "consistency_training";
}

bool is_karras(const DiffusionConfig& c) {
  if (c.training_mode == "improved_diffusion") return false;
  IDIFF_REQUIRE(
      c.training_mode == "edm" || c.training_mode == "progdist" || is_consistency(c.training_mode),
      ConfigError,
      "`training_mode` must be improved_diffusion, edm, consistency_distillation, "
      "consistency_training or progdist, got '",
      c.training_mode, "'");
  return true;
}

KarrasParams karras_params(const DiffusionConfig& c) {
  IDIFF_REQUIRE(is_karras(c), ConfigError, "`training_mode` ", c.training_mode,
                " is not a Karras (EDM or consistency) model");
  IDIFF_REQUIRE(!c.learn_sigma, ConfigError,
                "`learn_sigma` True: a Karras (EDM or consistency) "
                "model predicts x_0 through its scalings, with no variance channels");
  KarrasParams p;
  p.sigma_min = c.sigma_min;
  p.sigma_max = c.sigma_max;
  p.sigma_data = c.sigma_data;
  p.weight_schedule = c.weight_schedule;
  p.distillation = is_consistency(c.training_mode);
  check_karras_params(p);
  return p;
}

std::string describe_defaults(const DiffusionConfig& c) {
  if (is_karras(c)) {
    return str("Karras denoiser (", c.training_mode, "): sigma ", c.sigma_min, "..", c.sigma_max,
               ", sigma_data ", c.sigma_data, ", ",
               is_consistency(c.training_mode) ? "boundary-condition scalings" : "EDM scalings");
  }
  const bool guided = c.defaults == "guided-diffusion";
  const bool as_named = c.rescale_timesteps == !guided && c.rescale_learned_sigmas == !guided;
  auto b = [](bool v) { return v ? "True" : "False"; };
  return str("rescale_timesteps ", b(c.rescale_timesteps), ", rescale_learned_sigmas ",
             b(c.rescale_learned_sigmas),
             as_named ? str(" (", c.defaults, "'s defaults)") : std::string(" (set by flags)"));
}

}  // namespace idiff
