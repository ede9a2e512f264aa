#include "idiff/model/nn.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/nn/functional/upsampling.h>

#include <cmath>

namespace idiff {

GroupNorm32Impl::GroupNorm32Impl(int64_t channels)
    : torch::nn::GroupNormImpl(torch::nn::GroupNormOptions(32, channels)) {}

at::Tensor GroupNorm32Impl::forward(const at::Tensor& x) {
  // float32 and float64 inputs run as they are; half types are normalised in float32.
  if (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) {
    return torch::nn::GroupNormImpl::forward(x);
  }
  return torch::nn::GroupNormImpl::forward(x.to(at::kFloat)).to(x.scalar_type());
}

at::Tensor silu_of_norm(at::Tensor h) {
  if (!at::GradMode::is_enabled()) return at::silu_(h);
  return at::silu(h);
}

at::Tensor residual_add(const at::Tensor& x, at::Tensor h) {
  if (!at::GradMode::is_enabled() && h.scalar_type() == x.scalar_type() && h.sizes() == x.sizes()) {
    return h.add_(x);
  }
  return x + h;
}

GroupNorm32 normalization(int64_t channels) {
  IDIFF_REQUIRE(channels > 0 && channels % 32 == 0, ConfigError,
                "GroupNorm32 needs a channel count ", "divisible by its 32 groups, got ", channels,
                " (choose `num_channels` as a multiple of 32)");
  return GroupNorm32(channels);
}

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, double max_period) {
  TORCH_CHECK(timesteps.dim() == 1, "timestep_embedding expects [N] timesteps, got ",
              timesteps.sizes());
  const int64_t half = dim / 2;
  // Same float32 operation order as the reference: -ln(P) * arange / half, then exp.
  // Made on the timesteps' device: no host-to-device copy (CUDA graphs capture this).
  at::Tensor freqs = at::exp(
      -std::log(max_period) *
      at::arange(0, half, at::TensorOptions().dtype(at::kFloat).device(timesteps.device())) / half);
  at::Tensor args = timesteps.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);  // [N, half]
  at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, -1);                  // [N, 2*half]
  if (dim % 2) emb = at::cat({emb, at::zeros_like(emb.narrow(1, 0, 1))}, -1);
  return emb;
}

torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t padding, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).padding(padding).stride(stride));
}

UpsampleImpl::UpsampleImpl(int64_t channels, bool use_conv) : channels_(channels) {
  if (use_conv) conv_ = register_module("conv", conv2d(channels, channels, 3, 1));
}

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.size(1) == channels_, "Upsample expects ", channels_, " channels, got ", x.size(1));
  at::Tensor h;
  if (x.is_cpu() && !at::GradMode::is_enabled()) {
    // [N, C, H, W] -> [N, C, H, 2, W, 2] (a view) -> [N, C, 2H, 2W]: the same values in one
    // copy, 2.3x faster than the CPU kernel; with gradients the kernel's backward wins.
    const int64_t n = x.size(0), c = x.size(1), hh = x.size(2), ww = x.size(3);
    h = x.unsqueeze(3).unsqueeze(5).expand({n, c, hh, 2, ww, 2}).reshape({n, c, 2 * hh, 2 * ww});
  } else {
    h = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2});
  }
  return conv_ ? conv_->forward(h) : h;
}

DownsampleImpl::DownsampleImpl(int64_t channels, bool use_conv) : channels_(channels) {
  if (use_conv) {
    conv_ = register_module("op", conv2d(channels, channels, 3, 1, 2));
  } else {
    pool_ = register_module("op", torch::nn::AvgPool2d(torch::nn::AvgPool2dOptions(2).stride(2)));
  }
}

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.size(1) == channels_, "Downsample expects ", channels_, " channels, got ",
              x.size(1));
  return conv_ ? conv_->forward(x) : pool_->forward(x);
}

}  // namespace idiff
