// The model both examples share: a small grey 32x32 UNet on a cosine schedule.
#pragma once

#include <idiff/idiff.h>

inline idiff::ModelConfig example_model() {
  idiff::ModelConfig m;
  m.image_size = 32;
  m.image_channels = 1;
  m.num_channels = 32;
  m.num_res_blocks = 1;
  m.attention_resolutions = "8";
  return m;
}

inline idiff::DiffusionConfig example_diffusion() {
  idiff::DiffusionConfig d;
  d.noise_schedule = "cosine";
  d.diffusion_steps = 1000;
  return d;
}
