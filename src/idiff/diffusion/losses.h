// Likelihood helpers of the variational bound (reference: improved_diffusion/losses.py,
// ported there from Ho et al. 2020's diffusion_tf/utils.py). Every function keeps the
// reference's float32 operation order: the prior term, for one, is the small difference of
// numbers near 1 and only matches the reference when rounded the same way.
#pragma once

#include <ATen/core/Tensor.h>

namespace idiff {

// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats; the
// arguments broadcast against each other.
at::Tensor normal_kl(const at::Tensor& mean1, const at::Tensor& logvar1, const at::Tensor& mean2,
                     const at::Tensor& logvar2);

// The standard normal CDF through the tanh approximation used by the reference.
at::Tensor approx_standard_normal_cdf(const at::Tensor& x);

// log p(x) in nats, elementwise, of a Gaussian discretised to the 256 bins of an 8-bit image
// rescaled to [-1, 1] (Ho et al. 2020, eq. 13): the two edge bins reach to -inf / +inf.
// x, means and log_scales (log standard deviations) have the same shape.
at::Tensor discretized_gaussian_log_likelihood(const at::Tensor& x, const at::Tensor& means,
                                               const at::Tensor& log_scales);

// The mean over every dimension but the first: [N, ...] -> [N].
at::Tensor mean_flat(const at::Tensor& x);

// [N] -> [N, 1, ...] of `dims` dimensions, to broadcast against [N, C, ...] (append_dims).
at::Tensor append_dims(const at::Tensor& v, int64_t dims);

}  // namespace idiff
