// Images out: model samples in [-1, 1] to uint8 pixels the way the reference's
// image_sample.py converts them, and PNG files (stb_image_write) of one image or a grid.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace idiff {

// [N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8: ((x + 1) * 127.5).clamp(0, 255),
// truncated like the reference's .to(torch.uint8).
at::Tensor samples_to_uint8(const at::Tensor& samples);

// Writes [H, W, C] uint8 (C = 1, 3 or 4) as a PNG. FileError naming the path on failure.
void write_png(const std::string& path, const at::Tensor& hwc);
// The same PNG's bytes, in memory (a server's response); `what` names it in errors.
std::string encode_png(const at::Tensor& hwc, const std::string& what = "PNG");

// Tiles [N, H, W, C] uint8 images into a grid of `ncol` columns (0: about square) with a
// `pad`-pixel border of value `pad_value`, and returns it as [H', W', C].
at::Tensor make_grid(const at::Tensor& nhwc, int64_t ncol = 0, int64_t pad = 2,
                     uint8_t pad_value = 0);

}  // namespace idiff
