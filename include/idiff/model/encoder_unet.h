// EncoderUNetModel, guided-diffusion's noisy-image classifier (reference: guided_diffusion
// unet.py EncoderUNetModel, AttentionPool2d): the UNet's down path and middle block with
// the timestep embedding, then a head that pools the features into class logits.
//   adaptive    GroupNorm, SiLU, global average, 1x1 conv (zero-initialised)
//   attention   GroupNorm, SiLU, AttentionPool2d (CLIP's: the mean position attends to all)
//   spatial     the spatial means of every block's output, concatenated, then an MLP
//   spatial_v2  the same with GroupNorm and SiLU between the two linear layers
#pragma once

#include "idiff/model/unet.h"

#include <string>

namespace idiff {

struct EncoderUNetOptions {
  UNetOptions unet;  // the torso (in_channels, widths, levels, attention, ...); out_channels:
                     // the number of classes
  int64_t image_size = 64;        // the attention pool's positional embedding needs it
  std::string pool = "adaptive";  // adaptive, attention, spatial, spatial_v2
};

// The attention pool: x [N, C, H, W] -> [N, output_dim]. A query at the mean of the
// positions (with a learned positional embedding on every position) attends to all of them.
class AttentionPool2dImpl : public torch::nn::Module {
 public:
  AttentionPool2dImpl(int64_t spatial_dim, int64_t embed_dim, int64_t num_head_channels,
                      int64_t output_dim);
  at::Tensor forward(const at::Tensor& x);  // project(pooled(x))
  // The attention output at the query position, [N, embed_dim], and its projection.
  at::Tensor pooled(const at::Tensor& x);
  at::Tensor project(const at::Tensor& pooled);

 private:
  int64_t num_heads_;
  at::Tensor positional_embedding_;
  torch::nn::Conv1d qkv_proj_{nullptr}, c_proj_{nullptr};
};
TORCH_MODULE(AttentionPool2d);

class EncoderUNetModelImpl : public torch::nn::Module {
 public:
  explicit EncoderUNetModelImpl(const EncoderUNetOptions& options);

  // x: [N, in_channels, H, W]; timesteps: [N]. Returns [N, out_channels] logits in float32
  // (x's dtype).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps);
  // What the head maps to the logits, [N, D]: the pooled activations (adaptive: the spatial
  // mean after GroupNorm and SiLU; attention: the pool's attention output; spatial: every
  // block's spatial means). forward = head(pooled_features). A feature space for FID of
  // data Inception knows nothing of (idiff eval --feature_model).
  at::Tensor pooled_features(const at::Tensor& x, const at::Tensor& timesteps);
  at::Tensor head(const at::Tensor& features);

  const EncoderUNetOptions& options() const { return options_; }
  // The reference's convert_to_fp16 / fp32: the torso's convolutions change dtype.
  void convert_to_fp16();
  void convert_to_fp32();

 private:
  EncoderUNetOptions options_;
  torch::nn::Sequential time_embed_{nullptr};
  torch::nn::Linear time_linear1_{nullptr};
  torch::nn::ModuleList input_blocks_list_{nullptr};
  std::vector<TimestepEmbedSequential> input_blocks_;
  TimestepEmbedSequential middle_block_{nullptr};
  torch::nn::Sequential out_{nullptr};
};
TORCH_MODULE(EncoderUNetModel);

}  // namespace idiff
