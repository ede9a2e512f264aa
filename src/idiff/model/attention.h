// AttentionBlock and QKVAttention (reference: unet.py): self-attention over the spatial
// positions of a feature map, with the reference's head split and its f16-stable scaling
// (q and k each multiplied by 1/sqrt(sqrt(ch)) before the product).
#pragma once

#include "idiff/model/checkpoint.h"
#include "idiff/model/nn.h"

#include <torch/nn/modules/conv.h>

namespace idiff {

// qkv: [B*heads, 3*ch, T] -> [B*heads, ch, T]. The heads are split before q, k and v
// (the reference's order): each head's rows of the qkv projection are [q; k; v].
at::Tensor qkv_attention(const at::Tensor& qkv);

class AttentionBlockImpl : public torch::nn::Module {
 public:
  AttentionBlockImpl(int64_t channels, int64_t num_heads, bool use_checkpoint);
  at::Tensor forward(const at::Tensor& x);
  int64_t channels() const { return channels_; }
  int64_t num_heads() const { return num_heads_; }

 private:
  at::Tensor forward_impl(const at::Tensor& x);

  int64_t channels_, num_heads_;
  bool use_checkpoint_;
  GroupNorm32 norm_{nullptr};
  torch::nn::Conv1d qkv_{nullptr}, proj_out_{nullptr};
  TensorFn checkpointed_;
};
TORCH_MODULE(AttentionBlock);

}  // namespace idiff
