// ResBlock (reference: unet.py ResBlock): a residual block conditioned on the timestep
// embedding, optionally changing the channel count.
//
//   h = in_layers(x)                       GroupNorm32, SiLU, 3x3 conv
//   e = emb_layers(emb)                    SiLU, linear to C (or 2C for scale-shift)
//   scale-shift: h = out_norm(h) * (1 + scale) + shift, then SiLU, dropout, zero conv
//   otherwise:   h = out_layers(h + e)
//   return skip_connection(x) + h          identity, 1x1 conv, or 3x3 conv (use_conv)
// With up/down (guided-diffusion): h = in_conv(resample(SiLU(norm(x)))), x = resample(x).
#pragma once

#include "idiff/model/gradient_checkpoint.h"
#include "idiff/model/nn.h"
#include "idiff/model/timestep_block.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

namespace idiff {

struct ResBlockOptions {
  int64_t channels = 0;
  int64_t emb_channels = 0;
  double dropout = 0.0;
  int64_t out_channels = 0;  // 0: same as channels
  bool use_conv = false;     // 3x3 instead of 1x1 conv on the skip path
  bool use_scale_shift_norm = false;
  bool use_checkpoint = false;
  // guided-diffusion: resample inside the block, between in_layers' SiLU and its conv (h)
  // and on the skip path (x), nearest x2 / 2x2 average pooling, no parameters.
  bool up = false;
  bool down = false;
};

class ResBlockImpl : public TimestepBlock {
 public:
  explicit ResBlockImpl(const ResBlockOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb) override;

  const ResBlockOptions& options() const { return options_; }
  int64_t out_channels() const { return out_channels_; }

 private:
  at::Tensor forward_impl(const at::Tensor& x, const at::Tensor& emb);

  ResBlockOptions options_;
  int64_t out_channels_;
  // Registered under the reference's names; the typed handles below point into them.
  torch::nn::Sequential in_layers_{nullptr}, emb_layers_{nullptr}, out_layers_{nullptr};
  GroupNorm32 in_norm_{nullptr}, out_norm_{nullptr};
  torch::nn::Conv2d in_conv_{nullptr}, out_conv_{nullptr};
  torch::nn::Linear emb_linear_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Conv2d skip_conv_{nullptr};  // null: identity
  Upsample h_up_{nullptr}, x_up_{nullptr};
  Downsample h_down_{nullptr}, x_down_{nullptr};
  TensorFn checkpointed_;  // forward_impl, for checkpoint()
};
TORCH_MODULE(ResBlock);

}  // namespace idiff
