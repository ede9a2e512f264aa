#include "idiff/model/attention.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <cmath>

namespace idiff {

at::Tensor qkv_attention(const at::Tensor& qkv) {
  const int64_t ch = qkv.size(1) / 3;
  auto parts = qkv.split(ch, 1);  // q, k, v: [BH, ch, T]
  const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(ch)));
  // [BH, ch, T] x [BH, ch, S] -> [BH, T, S]; scaling both factors is more stable in f16.
  at::Tensor weight = at::einsum("bct,bcs->bts", {parts[0] * scale, parts[1] * scale});
  weight = at::softmax(weight.to(at::kFloat), -1).to(weight.scalar_type());
  return at::einsum("bts,bcs->bct", {weight, parts[2]});  // [BH, ch, T]
}

AttentionBlockImpl::AttentionBlockImpl(int64_t channels, int64_t num_heads, bool use_checkpoint)
    : channels_(channels), num_heads_(num_heads), use_checkpoint_(use_checkpoint) {
  IDIFF_REQUIRE(num_heads > 0 && channels % num_heads == 0, ConfigError, "attention with ",
                channels, " channels cannot be split into ", num_heads,
                " heads (channels must be divisible by --num_heads / --num_heads_upsample)");
  norm_ = register_module("norm", normalization(channels));
  qkv_ = register_module("qkv", torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, 3 * channels, 1)));
  proj_out_ = register_module(
      "proj_out", zero_module(torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, channels, 1))));
  checkpointed_ = [this](const std::vector<at::Tensor>& in) {
    return std::vector<at::Tensor>{forward_impl(in[0])};
  };
}

at::Tensor AttentionBlockImpl::forward(const at::Tensor& x) {
  if (!use_checkpoint_) return forward_impl(x);
  return checkpoint(checkpointed_, {x}, parameters(), /*enabled=*/true)[0];
}

at::Tensor AttentionBlockImpl::forward_impl(const at::Tensor& x) {
  const auto shape = x.sizes().vec();
  const int64_t b = shape[0], c = shape[1];
  at::Tensor flat = x.reshape({b, c, -1});                            // [B, C, T]
  at::Tensor qkv = qkv_->forward(norm_->forward(flat));                // [B, 3C, T]
  qkv = qkv.reshape({b * num_heads_, -1, qkv.size(2)});                // [B*H, 3C/H, T]
  at::Tensor h = qkv_attention(qkv).reshape({b, -1, qkv.size(2)});    // [B, C, T]
  h = proj_out_->forward(h);
  return (flat + h).reshape(shape);
}

}  // namespace idiff
