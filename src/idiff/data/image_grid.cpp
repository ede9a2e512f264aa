#include "idiff/data/image_grid.h"

#include "idiff/common/error.h"
#include "idiff/io/atomic_file.h"

#include <ATen/ATen.h>
#include <stb/stb_image_write.h>

#include <cmath>

namespace idiff {

at::Tensor samples_to_uint8(const at::Tensor& samples) {
  TORCH_CHECK(samples.dim() == 4, "samples_to_uint8 expects [N, C, H, W], got ", samples.sizes());
  return ((samples.detach().to(at::kFloat) + 1) * 127.5)
      .clamp(0, 255)
      .to(at::kByte)
      .permute({0, 2, 3, 1})
      .contiguous()
      .cpu();
}

std::string encode_png(const at::Tensor& hwc, const std::string& what) {
  TORCH_CHECK(hwc.dim() == 3 && hwc.scalar_type() == at::kByte,
              "encode_png expects [H, W, C] uint8");
  const at::Tensor img = hwc.contiguous().cpu();
  const int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1)),
            c = static_cast<int>(img.size(2));
  IDIFF_REQUIRE(c == 1 || c == 3 || c == 4, Error, what, ": cannot write a PNG with ", c,
                " channels");
  std::string png;
  const auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                               static_cast<size_t>(size));
  };
  const int ok = stbi_write_png_to_func(append, &png, w, h, c, img.data_ptr<uint8_t>(), w * c);
  IDIFF_REQUIRE(ok != 0 && !png.empty(), FileError, what, ": could not encode the PNG");
  return png;
}

void write_png(const std::string& path, const at::Tensor& hwc) {
  // Encoded in memory, then written as every output is (io/atomic_file.h): a full disk or
  // an interrupted run leaves no empty or torn PNG under the final name.
  write_bytes_atomically(path, encode_png(hwc, path));
}

at::Tensor make_grid(const at::Tensor& nhwc, int64_t ncol, int64_t pad, uint8_t pad_value) {
  TORCH_CHECK(nhwc.dim() == 4, "make_grid expects [N, H, W, C], got ", nhwc.sizes());
  const int64_t n = nhwc.size(0), h = nhwc.size(1), w = nhwc.size(2), c = nhwc.size(3);
  if (ncol <= 0) ncol = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(double(n)))));
  ncol = std::min(ncol, std::max<int64_t>(n, 1));
  const int64_t nrow = (n + ncol - 1) / ncol;
  at::Tensor grid = at::full({nrow * (h + pad) + pad, ncol * (w + pad) + pad, c}, pad_value,
                             at::TensorOptions().dtype(at::kByte));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / ncol, col = i % ncol;
    grid.narrow(0, pad + r * (h + pad), h).narrow(1, pad + col * (w + pad), w).copy_(nhwc[i]);
  }
  return grid;
}

}  // namespace idiff
