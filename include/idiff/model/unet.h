// UNetModel and SuperResModel (reference: unet.py). The full UNet with timestep
// embedding, residual blocks, attention at chosen downsample rates, optional class
// embedding; submodules carry the reference's names, so state dicts load name for name.
#pragma once

#include "idiff/model/attention.h"
#include "idiff/model/resblock.h"
#include "idiff/model/timestep_block.h"

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/embedding.h>

#include <vector>

namespace idiff {

// The reference's model_kwargs: extra conditioning a model may take. Undefined tensors
// are absent.
struct ModelKwargs {
  at::Tensor y;        // [N] int64 class labels (class-conditional models)
  at::Tensor low_res;  // [N, C, h, w] low-resolution image (super-resolution models)
};

struct UNetOptions {
  int64_t in_channels = 3;
  int64_t model_channels = 128;
  int64_t out_channels = 3;
  int64_t num_res_blocks = 2;
  std::vector<int64_t> attention_resolutions;  // downsample rates (1, 2, 4, ...)
  double dropout = 0.0;
  // Channels of each level: int(mult * model_channels) (0.5 at 512x512 in guided-diffusion).
  std::vector<double> channel_mult = {1, 2, 4, 8};
  bool conv_resample = true;
  int64_t num_classes = 0;  // 0: not class-conditional
  bool null_label = false;  // one more embedding row, label num_classes: "no class" (CFG)
  bool use_checkpoint = false;
  int64_t num_heads = 1;
  int64_t num_heads_upsample = -1;  // -1: num_heads
  bool use_scale_shift_norm = false;
  // guided-diffusion's additions (ADM):
  int64_t num_head_channels = -1;        // > 0: heads of this width (num_heads = channels / it)
  bool resblock_updown = false;          // ResBlocks that up/downsample replace Upsample/Downsample
  bool use_new_attention_order = false;  // QKVAttention: split q, k, v before the heads
};

// A level's channels as guided-diffusion computes them: int(mult * model_channels).
inline int64_t level_channels(double mult, int64_t model_channels) {
  return static_cast<int64_t>(mult * static_cast<double>(model_channels));
}

class UNetModelImpl : public torch::nn::Module {
 public:
  explicit UNetModelImpl(const UNetOptions& options);

  // x: [N, in_channels, H, W]; timesteps: [N] (float or integer, as the diffusion feeds
  // them); y: [N] int64 labels, required exactly when the model is class-conditional
  // (num_classes: the null label, when the model has one).
  // Returns [N, out_channels, H, W] in x's dtype.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps,
                     const at::Tensor& y = at::Tensor());

  // The forward with the conditioning as a struct, for callers that hold any UNet
  // (diffusion, training, sampling). A UNetModel refuses low_res.
  virtual at::Tensor forward_kwargs(const at::Tensor& x, const at::Tensor& timesteps,
                                    const ModelKwargs& kwargs);

  const UNetOptions& options() const { return options_; }
  const std::vector<TimestepEmbedSequential>& input_blocks() const { return input_blocks_; }
  const TimestepEmbedSequential& middle_block() const { return middle_block_; }
  const std::vector<TimestepEmbedSequential>& output_blocks() const { return output_blocks_; }
  // The dtype of the torso (input, middle and output blocks): float32, or float16 after
  // convert_to_fp16().
  at::ScalarType inner_dtype() const;
  // The reference's convert_to_fp16/fp32: the torso's convolution weights change dtype;
  // norms, embeddings and the output head stay float32.
  void convert_to_fp16();
  void convert_to_fp32();
  // The same to any floating dtype (bfloat16: idiff's alternative to float16 on CUDA).
  void convert_torso(at::ScalarType dtype);
  // How every attention block of this model computes (AttentionImpl; Auto by default).
  void set_attention_impl(AttentionImpl impl);

 protected:
  at::Tensor forward_checked(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& y);

 private:
  UNetOptions options_;
  torch::nn::Sequential time_embed_{nullptr};
  torch::nn::Linear time_linear1_{nullptr}, time_linear2_{nullptr};
  torch::nn::Embedding label_emb_{nullptr};
  torch::nn::ModuleList input_blocks_list_{nullptr}, output_blocks_list_{nullptr};
  std::vector<TimestepEmbedSequential> input_blocks_, output_blocks_;
  TimestepEmbedSequential middle_block_{nullptr};
  torch::nn::Sequential out_{nullptr};
  GroupNorm32 out_norm_{nullptr};
  torch::nn::Conv2d out_conv_{nullptr};
};
TORCH_MODULE(UNetModel);

// A UNet conditioned on a low-resolution image: low_res is upsampled bilinearly to x's
// size and concatenated to x along channels (so the UNet sees 2 * in_channels).
class SuperResModelImpl : public UNetModelImpl {
 public:
  explicit SuperResModelImpl(UNetOptions options);  // options.in_channels: image channels
  at::Tensor forward(const at::Tensor& x, const at::Tensor& timesteps, const at::Tensor& low_res,
                     const at::Tensor& y = at::Tensor());
  at::Tensor forward_kwargs(const at::Tensor& x, const at::Tensor& timesteps,
                            const ModelKwargs& kwargs) override;
};

}  // namespace idiff
