// The settings structs shared by every layer, with the reference's defaults
// (improved_diffusion/script_util.py: model_and_diffusion_defaults(),
// sr_model_and_diffusion_defaults()). Only cli/ turns flags into these; the library takes
// the structs, never flags.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// The UNet's shape. Field names are the reference's flag names.
struct ModelConfig {
  int64_t image_size = 64;
  int64_t num_channels = 128;
  int64_t num_res_blocks = 2;
  int64_t num_heads = 4;
  int64_t num_heads_upsample = -1;  // -1: same as num_heads
  std::string attention_resolutions = "16,8";
  double dropout = 0.0;
  bool learn_sigma = false;
  bool class_cond = false;
  bool use_checkpoint = false;
  bool use_scale_shift_norm = true;
  // Super-resolution only (sr_model_and_diffusion_defaults): the model works at
  // large_size and is conditioned on an image of small_size.
  int64_t large_size = 256;
  int64_t small_size = 64;
};

// The Gaussian diffusion process. learn_sigma mirrors ModelConfig::learn_sigma (one flag
// sets both, as in the reference's create_model_and_diffusion).
struct DiffusionConfig {
  bool learn_sigma = false;
  bool sigma_small = false;
  int64_t diffusion_steps = 1000;
  std::string noise_schedule = "linear";
  std::string timestep_respacing = "";
  bool use_kl = false;
  bool predict_xstart = false;
  bool rescale_timesteps = true;
  bool rescale_learned_sigmas = true;
};

// Number of classes of a class-conditional model (script_util.NUM_CLASSES).
constexpr int64_t kNumClasses = 1000;

}  // namespace idiff
