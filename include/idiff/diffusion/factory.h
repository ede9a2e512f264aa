// Building a diffusion from the reference's flags (reference: improved_diffusion/
// script_util.py, create_gaussian_diffusion).
//   loss:  --use_kl -> RESCALED_KL, else --rescale_learned_sigmas -> RESCALED_MSE, else MSE
//   var:   --learn_sigma -> LEARNED_RANGE, else --sigma_small -> FIXED_SMALL, else FIXED_LARGE
//   mean:  --predict_xstart -> START_X, else EPSILON
//   steps: --diffusion_steps of --noise_schedule, respaced by --timestep_respacing ("" keeps
//          them all); --rescale_timesteps scales the model's timesteps to 0..1000.
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/respace.h"

namespace idiff {

// The parameters of the full (not respaced) process.
DiffusionParams diffusion_params(const DiffusionConfig& config);

// Always a SpacedDiffusion, as in the reference (with every step kept when
// timestep_respacing is empty). Bad settings are ConfigErrors naming the flag.
SpacedDiffusion create_gaussian_diffusion(const DiffusionConfig& config);

// Whether --training_mode names a Karras denoiser of consistency_models (edm, progdist,
// consistency_distillation, consistency_training) rather than improved_diffusion; an unknown
// mode is a ConfigError naming the flag.
bool is_karras(const DiffusionConfig& config);
// Whether it is consistency_distillation or consistency_training (the boundary-condition
// scalings; edm and progdist models have EDM's).
bool is_consistency(const std::string& training_mode);
// Its settings (distillation for the consistency modes), checked.
KarrasParams karras_params(const DiffusionConfig& config);

// For the logs: "rescale_timesteps False, rescale_learned_sigmas False (guided-diffusion's
// defaults)", or "(set by flags)" when they are not the defaults named.
std::string describe_defaults(const DiffusionConfig& config);

}  // namespace idiff
