// A human-readable layout of a UNet: one line per block with its layers, channels,
// resolution and parameter count (used by `idiff info`).
#pragma once

#include "idiff/model/unet.h"

#include <string>

namespace idiff {

// `image_size` is the model's working resolution (for the resolution column).
std::string describe_unet(const UNetModelImpl& model, int64_t image_size);

// 52546438 -> "52,546,438"
std::string with_commas(int64_t n);

}  // namespace idiff
