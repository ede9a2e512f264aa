// What super-resolution adds to the image drivers (reference: scripts/super_res_train.py
// and super_res_sample.py): the low-resolution copy a training batch is conditioned on, and
// the base samples a super-res sampling run upsamples.
#pragma once

#include "idiff/config.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace idiff {

// The reference's F.interpolate(large, small_size, mode="area"): [N, C, large, large] ->
// [N, C, small, small].
at::Tensor low_res_copy(const at::Tensor& images, int64_t small_size);

// The low-resolution images (and labels) of a samples file, as --base_samples holds them.
struct BaseSamples {
  at::Tensor images;  // [N, C, h, w] float in [-1, 1]
  at::Tensor labels;  // [N] int64 or undefined
};
// Reads --base_samples (a samples_*.npz of `idiff sample`) for the model `m`: its images
// must be m.small_size square with m.image_channels channels; labels when m is
// class-conditional.
BaseSamples read_base_samples(const std::string& path, const ModelConfig& m);

}  // namespace idiff
