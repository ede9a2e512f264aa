#include "idiff/drivers/super_res.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/io/npz.h"
#include "idiff/model/unet.h"

#include <ATen/ATen.h>

namespace idiff {

at::Tensor low_res_copy(const at::Tensor& images, int64_t small_size) {
  return at::adaptive_avg_pool2d(images, {small_size, small_size});
}

BaseSamples read_base_samples(const std::string& path, const ModelConfig& m) {
  IDIFF_REQUIRE(!path.empty(), ConfigError,
                "`base_samples` is required: a samples_*.npz written by `idiff sample`");
  const TensorMap arrays = read_npz(path);
  IDIFF_REQUIRE(arrays.contains("arr_0"), FileError, path,
                ": no arr_0 (expected the images of a samples file)");
  const at::Tensor& a = arrays.at("arr_0");
  IDIFF_REQUIRE(a.dim() == 4 && a.size(3) == m.image_channels && a.scalar_type() == at::kByte &&
                    a.size(0) > 0,
                FileError, path, ": arr_0 must be uint8 images [N, H, W, ", m.image_channels,
                "], got ", a.scalar_type(), " ", a.sizes());
  IDIFF_REQUIRE(a.size(1) == m.small_size && a.size(2) == m.small_size, FileError, path,
                ": images are ", a.size(1), "x", a.size(2), " but `small_size` is ", m.small_size);
  BaseSamples b;
  b.images = a.to(at::kFloat).div(127.5).sub(1.0).permute({0, 3, 1, 2}).contiguous();
  if (m.class_cond) {
    IDIFF_REQUIRE(arrays.contains("arr_1"), FileError, path,
                  ": no arr_1 (labels), needed by a class-conditional model");
    const at::Tensor& l = arrays.at("arr_1");
    IDIFF_REQUIRE(l.dim() == 1 && l.size(0) == a.size(0), FileError, path, ": arr_1 must hold ",
                  a.size(0), " labels, got ", l.sizes());
    IDIFF_REQUIRE(c10::isIntegralType(l.scalar_type(), /*includeBool=*/false), FileError, path,
                  ": arr_1 (labels) must hold integers, got ", c10::toString(l.scalar_type()));
    b.labels = l.to(at::kLong);
    IDIFF_REQUIRE(
        b.labels.min().item<int64_t>() >= 0 && b.labels.max().item<int64_t>() < kNumClasses,
        FileError, path, ": labels must lie in [0, ", kNumClasses, ")");
  }
  return b;
}

}  // namespace idiff
