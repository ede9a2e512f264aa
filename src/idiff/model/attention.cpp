#include "idiff/model/attention.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace idiff {

namespace {

// CPU: the attention weights of this many bytes at a time stay in the core's L2 cache from
// the first product through the softmax to the second (measured: README, Performance).
constexpr int64_t kCpuChunkBytes = int64_t{1} << 20;

AttentionImpl resolve(AttentionImpl impl, const at::Tensor& qkv) {
  if (impl != AttentionImpl::Auto) return impl;
  // CUDA: the fused kernels. CPU: ATen's flash kernel equals the chunked products in
  // speed at these head sizes (16-64) and needs about a quarter less peak memory in
  // training (README, Performance).
  (void)qkv;
  return AttentionImpl::Sdpa;
}

// q, k: [n, ch, T] -> the attention weights [n, T, S], softmax taken in float32.
at::Tensor attention_weights(const at::Tensor& q, const at::Tensor& k) {
  const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(q.size(1))));
  // [n, T, ch] x [n, ch, S] -> [n, T, S]; both factors scaled as in the reference (f16).
  const at::Tensor weight = at::bmm((q * scale).transpose(1, 2), k * scale);
  return at::softmax(weight, -1, at::kFloat).to(q.scalar_type());
}

// q, k, v: [n, ch, T] -> [n, ch, T] (a transposed view of [n, T, ch]).
at::Tensor bmm_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  // [n, T, S] x [n, S, ch] -> [n, T, ch]: in this order the gradient reaching the softmax
  // is contiguous (the other order makes its backward copy a transposed [n, T, S]).
  return at::bmm(attention_weights(q, k), v.transpose(1, 2)).transpose(1, 2);
}

// The attention's 1x1 Conv1d ([B, C, T] -> [B, O, T]) as one batched product with the bias
// as its added term. On the CPU oneDNN's 1x1 convolution is 1.5-5x slower at these shapes
// (16x64x256 -> 192: 3.2 ms against 0.6 ms forward, 2.3 against 1.5 ms with the backward;
// README, Performance); CUDA keeps the convolution.
at::Tensor pointwise_conv1d(torch::nn::Conv1d& conv, const at::Tensor& x) {
  if (!x.is_cpu()) return conv->forward(x);
  const at::Tensor& w = conv->weight;  // [O, C, 1]
  return at::baddbmm(conv->bias.view({1, -1, 1}), w.squeeze(2).expand({x.size(0), -1, -1}), x);
}

}  // namespace

AttentionImpl parse_attention_impl(const std::string& name, const std::string& flag) {
  if (name == "auto") return AttentionImpl::Auto;
  if (name == "einsum") return AttentionImpl::Einsum;
  if (name == "bmm") return AttentionImpl::Bmm;
  if (name == "sdpa") return AttentionImpl::Sdpa;
  throw ConfigError(str(flag, " must be auto, einsum, bmm or sdpa, got '", name, "'"));
}

at::Tensor qkv_attention(const at::Tensor& qkv, AttentionImpl impl) {
  const int64_t ch = qkv.size(1) / 3;
  auto parts = qkv.split(ch, 1);  // q, k, v: [BH, ch, T]
  switch (resolve(impl, qkv)) {
    case AttentionImpl::Sdpa: {
      // softmax(q k^T / sqrt(ch)) v on [1, BH, T, ch]: the fused CUDA kernels (flash,
      // memory-efficient, cuDNN) take 4-d inputs whose last dimension is contiguous, so
      // the [BH, ch, T] parts are copied transposed (else the math fallback runs).
      const auto heads_first = [](const at::Tensor& p) {
        return p.transpose(1, 2).contiguous().unsqueeze(0);
      };
      return at::scaled_dot_product_attention(heads_first(parts[0]), heads_first(parts[1]),
                                              heads_first(parts[2]))
          .squeeze(0)
          .transpose(1, 2);  // [BH, ch, T]
    }
    case AttentionImpl::Bmm: {
      const int64_t bh = qkv.size(0), t = qkv.size(2);
      const int64_t per_item = t * t * static_cast<int64_t>(qkv.element_size());
      const int64_t chunk = qkv.is_cpu() ? std::max<int64_t>(1, kCpuChunkBytes / per_item) : bh;
      if (chunk >= bh) return bmm_attention(parts[0], parts[1], parts[2]);
      if (!(at::GradMode::is_enabled() && qkv.requires_grad())) {
        // No gradient: each chunk's v [n, ch, S] x weights^T [n, S, T] goes straight into
        // its rows of the output, with no cat (2.5% of tiny sampling's time).
        at::Tensor out = at::empty({bh, ch, t}, qkv.options());
        for (int64_t start = 0; start < bh; start += chunk) {
          const int64_t n = std::min(chunk, bh - start);
          const auto p = qkv.narrow(0, start, n).split(ch, 1);
          at::Tensor rows = out.narrow(0, start, n);
          at::bmm_out(rows, p[2], attention_weights(p[0], p[1]).transpose(1, 2));
        }
        return out;
      }
      // One split (its backward is one cat), then q, k, v of each chunk.
      std::vector<at::Tensor> out;
      for (const at::Tensor& c : qkv.split(chunk, 0)) {
        const auto p = c.split(ch, 1);
        out.push_back(bmm_attention(p[0], p[1], p[2]));
      }
      return at::cat(out, 0);
    }
    default: {
      const double scale = 1.0 / std::sqrt(std::sqrt(static_cast<double>(ch)));
      // [BH, ch, T] x [BH, ch, S] -> [BH, T, S]; scaling both factors is more stable in f16.
      at::Tensor weight = at::einsum("bct,bcs->bts", {parts[0] * scale, parts[1] * scale});
      weight = at::softmax(weight.to(at::kFloat), -1).to(weight.scalar_type());
      return at::einsum("bts,bcs->bct", {weight, parts[2]});  // [BH, ch, T]
    }
  }
}

at::Tensor multi_head_attention(const at::Tensor& qkv, int64_t heads, bool new_order,
                                AttentionImpl impl) {
  const int64_t b = qkv.size(0), t = qkv.size(2);
  at::Tensor rows = qkv;
  if (new_order) {
    // [B, 3, H, C/H, T] -> [B, H, 3, C/H, T]: each head's rows become [q; k; v] as in the
    // reference's order, so both orders share qkv_attention.
    rows = rows.reshape({b, 3, heads, -1, t}).transpose(1, 2);
  }
  rows = rows.reshape({b * heads, -1, t});               // [B*H, 3C/H, T]
  return qkv_attention(rows, impl).reshape({b, -1, t});  // [B, C, T]
}

AttentionBlockImpl::AttentionBlockImpl(int64_t channels, int64_t num_heads, bool use_checkpoint,
                                       bool new_order)
    : channels_(channels),
      num_heads_(num_heads),
      use_checkpoint_(use_checkpoint),
      new_order_(new_order) {
  IDIFF_REQUIRE(num_heads > 0 && channels % num_heads == 0, ConfigError, "attention with ",
                channels, " channels cannot be split into ", num_heads,
                " heads (channels must be divisible by `num_heads` / `num_heads_upsample`)");
  norm_ = register_module("norm", normalization(channels));
  qkv_ = register_module("qkv",
                         torch::nn::Conv1d(torch::nn::Conv1dOptions(channels, 3 * channels, 1)));
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
  at::Tensor flat = x.reshape({b, c, -1});                                  // [B, C, T]
  at::Tensor qkv = pointwise_conv1d(qkv_, norm_->forward(flat));            // [B, 3C, T]
  at::Tensor h = multi_head_attention(qkv, num_heads_, new_order_, impl_);  // [B, C, T]
  h = pointwise_conv1d(proj_out_, h);
  return residual_add(flat, h).reshape(shape);
}

}  // namespace idiff
