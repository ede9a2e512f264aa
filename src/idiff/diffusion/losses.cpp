#include "idiff/diffusion/losses.h"

#include <ATen/ATen.h>

#include <cmath>
#include <numeric>
#include <vector>

namespace idiff {

at::Tensor normal_kl(const at::Tensor& mean1, const at::Tensor& logvar1, const at::Tensor& mean2,
                     const at::Tensor& logvar2) {
  return 0.5 * (((-1.0 + logvar2) - logvar1 + at::exp(logvar1 - logvar2)) +
                (mean1 - mean2).pow(2) * at::exp(-logvar2));
}

at::Tensor approx_standard_normal_cdf(const at::Tensor& x) {
  return 0.5 * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3))));
}

at::Tensor discretized_gaussian_log_likelihood(const at::Tensor& x, const at::Tensor& means,
                                               const at::Tensor& log_scales) {
  TORCH_CHECK(x.sizes() == means.sizes() && x.sizes() == log_scales.sizes(),
              "discretized_gaussian_log_likelihood: shapes differ: x ", x.sizes(), ", means ",
              means.sizes(), ", log_scales ", log_scales.sizes());
  const at::Tensor centered_x = x - means;
  const at::Tensor inv_stdv = at::exp(-log_scales);
  // CDF at the upper and lower edges of x's bin (bins are 2/255 wide).
  const at::Tensor cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0));
  const at::Tensor cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0));
  const at::Tensor log_cdf_plus = at::log(cdf_plus.clamp_min(1e-12));
  const at::Tensor log_one_minus_cdf_min = at::log((1.0 - cdf_min).clamp_min(1e-12));
  const at::Tensor cdf_delta = cdf_plus - cdf_min;
  return at::where(
      x < -0.999, log_cdf_plus,
      at::where(x > 0.999, log_one_minus_cdf_min, at::log(cdf_delta.clamp_min(1e-12))));
}

at::Tensor append_dims(const at::Tensor& v, int64_t dims) {
  std::vector<int64_t> shape(static_cast<size_t>(dims), 1);
  shape[0] = v.size(0);
  return v.view(shape);
}

at::Tensor mean_flat(const at::Tensor& x) {
  if (x.dim() <= 1) return x;
  std::vector<int64_t> dims(static_cast<size_t>(x.dim() - 1));
  std::iota(dims.begin(), dims.end(), 1);
  return x.mean(dims);
}

}  // namespace idiff
