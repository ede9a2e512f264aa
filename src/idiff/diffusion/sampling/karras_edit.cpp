#include "idiff/diffusion/sampling/karras_edit.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <cmath>

namespace idiff {
namespace {

// An orthonormal basis ([d, d], columns) whose first column is `v` normalised (the
// reference's obtain_orthogonal_matrix: QR of the identity with v as first column, signs
// such that the first column sums positive).
at::Tensor basis_with_first(const at::Tensor& v) {
  const int64_t d = v.size(0);
  at::Tensor m = at::eye(d, at::kDouble);
  m.select(1, 0).copy_(v.to(at::kDouble) / v.to(at::kDouble).norm());
  at::Tensor q = std::get<0>(at::linalg_qr(m));
  if (q.select(1, 0).sum().item<double>() < 0) q = -q;
  return q.to(at::kFloat);
}

// [N, C, H, W] -> [N, C, H/p * W/p, p*p] (patches, row-major inside each) and back.
at::Tensor to_patches(const at::Tensor& x, int64_t p) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.reshape({n, c, h / p, p, w / p, p})
      .permute({0, 1, 2, 4, 3, 5})
      .reshape({n, c, (h / p) * (w / p), p * p});
}
at::Tensor from_patches(const at::Tensor& x, int64_t p, int64_t h, int64_t w) {
  const int64_t n = x.size(0), c = x.size(1);
  return x.reshape({n, c, h / p, w / p, p, p}).permute({0, 1, 2, 4, 3, 5}).reshape({n, c, h, w});
}

EditTask edit_task(std::string name, const at::Tensor& known, MixFn mix) {
  EditTask t;
  t.name = std::move(name);
  t.known = known;
  t.mix = mix;
  t.replace = [known, mix](const at::Tensor& x0) { return mix(known, x0); };
  return t;
}

}  // namespace

EditTask inpaint_task(const at::Tensor& images, const at::Tensor& mask) {
  IDIFF_REQUIRE(mask.dim() == 4 && mask.size(2) == images.size(2) && mask.size(3) == images.size(3),
                ConfigError, "the mask is ", mask.sizes(), "; expected the image's size ",
                images.size(2), "x", images.size(3));
  const at::Tensor m = mask.to(images.scalar_type()).expand_as(images).contiguous();
  return edit_task(
      "inpaint", images * m - (1 - m),
      [m](const at::Tensor& keep, const at::Tensor& x) { return keep * m + x * (1 - m); });
}

EditTask colorize_task(const at::Tensor& images) {
  IDIFF_REQUIRE(images.size(1) == 3, ConfigError, "colorize needs RGB images, got ", images.size(1),
                " channels");
  const at::Tensor q = basis_with_first(at::tensor({0.2989, 0.5870, 0.1140}, at::kDouble))
                           .to(images.device());  // [c, d]
  // In the basis: y[d] = sum_c x[c] Q[c, d]; keep axis 0 (luminance) of `keep`, the rest of x.
  const auto mix = [q](const at::Tensor& keep, const at::Tensor& x) {
    const at::Tensor a = at::einsum("bchw,cd->bdhw", {keep, q});
    at::Tensor b = at::einsum("bchw,cd->bdhw", {x, q}).clone();
    b.select(1, 0).copy_(a.select(1, 0));
    return at::einsum("bdhw,cd->bchw", {b, q});
  };
  return edit_task("colorize", mix(images, at::zeros_like(images)), mix);
}

EditTask superres_task(const at::Tensor& images, int64_t p) {
  const int64_t h = images.size(2), w = images.size(3);
  IDIFF_REQUIRE(h % p == 0 && w % p == 0, ConfigError, "superres works on ", p, "x", p,
                " patches: the image size must be a multiple of ", p, ", got ", h, "x", w);
  const at::Tensor q = basis_with_first(at::ones({p * p}, at::kDouble)).to(images.device());
  const auto mix = [q, p, h, w](const at::Tensor& keep, const at::Tensor& x) {
    const at::Tensor a = at::matmul(to_patches(keep, p), q);  // [N, C, n, d]
    at::Tensor b = at::matmul(to_patches(x, p), q).clone();
    b.select(3, 0).copy_(a.select(3, 0));
    return from_patches(at::matmul(b, q.t()), p, h, w);
  };
  // Every patch its mean (average_image_patches).
  const at::Tensor patches = to_patches(images, p);
  return edit_task("superres", from_patches(patches.mean(-1, true).expand_as(patches), p, h, w),
                   mix);
}

EditTask make_edit_task(const std::string& name, const at::Tensor& images, const at::Tensor& mask) {
  IDIFF_REQUIRE(name == "inpaint" || !mask.defined(), ConfigError, "`mask` is for --task inpaint");
  if (name == "inpaint") {
    IDIFF_REQUIRE(mask.defined(), ConfigError, "--task inpaint needs `mask` (white: keep)");
    return inpaint_task(images, mask);
  }
  if (name == "colorize") return colorize_task(images);
  if (name == "superres") return superres_task(images);
  throw ConfigError(str("`task` must be inpaint, colorize or superres, got '", name, "'"));
}

}  // namespace idiff
