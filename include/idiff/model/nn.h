// Small building blocks of the UNet (reference: improved_diffusion/nn.py and the
// Upsample/Downsample classes of unet.py).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

namespace idiff {

// GroupNorm with 32 groups whose arithmetic runs in float32 whatever the input dtype, as
// the reference's GroupNorm32 does; the result is cast back to the input dtype.
class GroupNorm32Impl : public torch::nn::GroupNormImpl {
 public:
  explicit GroupNorm32Impl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
};
TORCH_MODULE(GroupNorm32);

// SiLU of a GroupNorm output: in place when no gradient is recorded (sampling), else a
// new tensor (the backward of SiLU needs its input).
at::Tensor silu_of_norm(at::Tensor h);

// x + h for a residual connection; written into h (a fresh result of the block) when no
// gradient is recorded and the dtypes and shapes agree.
at::Tensor residual_add(const at::Tensor& x, at::Tensor h);

// The reference's normalization(channels): GroupNorm32(32, channels). Throws ConfigError
// when channels is not a multiple of 32.
GroupNorm32 normalization(int64_t channels);

// Sinusoidal embeddings of (possibly fractional) timesteps: [N] -> [N, dim], the cosine
// half first, then the sine half, zero-padded when dim is odd. Frequencies are
// exp(-ln(max_period) * i / half) for i < half = dim / 2.
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim,
                              double max_period = 10000.0);

// Sets every parameter of the module to zero and returns it (the reference's zero_module).
template <typename ModuleHolder>
ModuleHolder zero_module(ModuleHolder m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.zero_();
  return m;
}

// Nearest-neighbour x2 upsampling, optionally followed by a 3x3 convolution.
class UpsampleImpl : public torch::nn::Module {
 public:
  UpsampleImpl(int64_t channels, bool use_conv);
  at::Tensor forward(const at::Tensor& x);
  int64_t channels() const { return channels_; }
  bool use_conv() const { return !conv_.is_empty(); }

 private:
  int64_t channels_;
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample);

// x2 downsampling: a stride-2 3x3 convolution, or 2x2 average pooling. Registered as
// "op" like the reference so the state-dict key is `op.weight`.
class DownsampleImpl : public torch::nn::Module {
 public:
  DownsampleImpl(int64_t channels, bool use_conv);
  at::Tensor forward(const at::Tensor& x);
  int64_t channels() const { return channels_; }
  bool use_conv() const { return !conv_.is_empty(); }

 private:
  int64_t channels_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::AvgPool2d pool_{nullptr};
};
TORCH_MODULE(Downsample);

// A 2-D convolution with the reference's conv_nd(2, in, out, k, padding=p, stride=s).
torch::nn::Conv2d conv2d(int64_t in, int64_t out, int64_t kernel, int64_t padding = 0,
                         int64_t stride = 1);

}  // namespace idiff
