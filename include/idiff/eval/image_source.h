// The image sets `idiff eval` scores, read a batch at a time (never all at once):
//   an .npz sample file: arr_0, uint8 [N, H, W, C] with C = 3 (or 1, repeated to RGB), as
//     `idiff sample`, improved-diffusion and guided-diffusion's reference batches write;
//   a folder of images: every .jpg/.jpeg/.png/.gif under it, recursively, in sorted order
//     (image_datasets.h), converted to RGB as PIL's convert("RGB") does (alpha dropped,
//     grey repeated).
// Batches are float [B, 3, H, W] in [0, 1] (value / 255, as torchvision's ToTensor). The
// images of a folder may differ in size, so each is resized to 299x299 as it is read
// (bilinear, what the network does anyway; the same numbers, one image at a time).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace idiff {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  // The next min(n, remaining) images; an empty tensor at the end.
  virtual at::Tensor next(int64_t n) = 0;
  virtual std::string describe() const = 0;

  // An npz sample file or an image folder; FileError naming `flag` and the path when it
  // is neither, holds no images, or holds arrays of the wrong type or shape.
  static std::unique_ptr<ImageSource> open(const std::string& path, const std::string& flag);
};

}  // namespace idiff
