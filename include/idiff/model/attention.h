// AttentionBlock and QKVAttention (reference: unet.py): self-attention over the spatial
// positions of a feature map, with the reference's head split and its f16-stable scaling
// (q and k each multiplied by 1/sqrt(sqrt(ch)) before the product).
#pragma once

#include "idiff/model/gradient_checkpoint.h"
#include "idiff/model/nn.h"

#include <torch/nn/modules/conv.h>

#include <string>

namespace idiff {

// How QKVAttention computes: Einsum is the reference's formulation op for op (kept for the
// parity tests and as the fallback); Bmm the same two products as batched matrix products
// on transposed views, in L2-sized chunks on the CPU; Sdpa ATen's fused
// at::scaled_dot_product_attention (flash / memory-efficient kernels on CUDA, a flash
// kernel on the CPU), whose default scale 1/sqrt(ch) is the reference's ch^-1/4 applied to
// q and k each. Auto is Sdpa: the fastest measured on CUDA, on the CPU as fast as Bmm with
// less memory (see README, Performance).
enum class AttentionImpl { Auto, Einsum, Bmm, Sdpa };
// "auto", "einsum", "bmm", "sdpa" -> AttentionImpl; ConfigError naming `flag` otherwise.
AttentionImpl parse_attention_impl(const std::string& name, const std::string& flag);

// qkv: [B*heads, 3*ch, T] -> [B*heads, ch, T]. The heads are split before q, k and v
// (the reference's order): each head's rows of the qkv projection are [q; k; v].
at::Tensor qkv_attention(const at::Tensor& qkv, AttentionImpl impl = AttentionImpl::Einsum);

// qkv: [B, 3C, T] -> [B, C, T] over `heads` heads. new_order: guided-diffusion's
// QKVAttention (q, k, v split before the heads); false: the reference's order.
at::Tensor multi_head_attention(const at::Tensor& qkv, int64_t heads, bool new_order,
                                AttentionImpl impl = AttentionImpl::Auto);

class AttentionBlockImpl : public torch::nn::Module {
 public:
  // new_order: guided-diffusion's QKVAttention (q, k, v split before the heads); false: the
  // reference's order (QKVAttentionLegacy there).
  AttentionBlockImpl(int64_t channels, int64_t num_heads, bool use_checkpoint,
                     bool new_order = false);
  at::Tensor forward(const at::Tensor& x);
  int64_t channels() const { return channels_; }
  int64_t num_heads() const { return num_heads_; }
  // How this block computes (Auto by default); UNetModelImpl::set_attention_impl sets all.
  void set_impl(AttentionImpl impl) { impl_ = impl; }
  AttentionImpl impl() const { return impl_; }

 private:
  at::Tensor forward_impl(const at::Tensor& x);

  int64_t channels_, num_heads_;
  bool use_checkpoint_;
  bool new_order_;
  AttentionImpl impl_ = AttentionImpl::Auto;
  GroupNorm32 norm_{nullptr};
  torch::nn::Conv1d qkv_{nullptr}, proj_out_{nullptr};
  TensorFn checkpointed_;
};
TORCH_MODULE(AttentionBlock);

}  // namespace idiff
