#include "idiff/model/resblock.h"

#include <ATen/ATen.h>

namespace idiff {

ResBlockImpl::ResBlockImpl(const ResBlockOptions& options)
    : options_(options),
      out_channels_(options.out_channels > 0 ? options.out_channels : options.channels) {
  const int64_t c = options.channels, oc = out_channels_;
  in_norm_ = normalization(c);
  in_conv_ = conv2d(c, oc, 3, 1);
  in_layers_ =
      register_module("in_layers", torch::nn::Sequential(in_norm_, torch::nn::SiLU(), in_conv_));

  emb_linear_ = torch::nn::Linear(options.emb_channels, options.use_scale_shift_norm ? 2 * oc : oc);
  emb_layers_ =
      register_module("emb_layers", torch::nn::Sequential(torch::nn::SiLU(), emb_linear_));

  out_norm_ = normalization(oc);
  dropout_ = torch::nn::Dropout(options.dropout);
  out_conv_ = zero_module(conv2d(oc, oc, 3, 1));
  out_layers_ = register_module(
      "out_layers", torch::nn::Sequential(out_norm_, torch::nn::SiLU(), dropout_, out_conv_));

  if (options.up) {
    h_up_ = register_module("h_upd", Upsample(c, false));
    x_up_ = register_module("x_upd", Upsample(c, false));
  } else if (options.down) {
    h_down_ = register_module("h_upd", Downsample(c, false));
    x_down_ = register_module("x_upd", Downsample(c, false));
  }
  if (oc != c) {
    skip_conv_ = register_module("skip_connection",
                                 options.use_conv ? conv2d(c, oc, 3, 1) : conv2d(c, oc, 1));
  }
  checkpointed_ = [this](const std::vector<at::Tensor>& in) {
    return std::vector<at::Tensor>{forward_impl(in[0], in[1])};
  };
}

at::Tensor ResBlockImpl::forward(const at::Tensor& x, const at::Tensor& emb) {
  if (!options_.use_checkpoint) return forward_impl(x, emb);
  return checkpoint(checkpointed_, {x, emb}, parameters(), /*enabled=*/true,
                    /*preserve_rng=*/is_training() && options_.dropout > 0)[0];
}

at::Tensor ResBlockImpl::forward_impl(const at::Tensor& x, const at::Tensor& emb) {
  at::Tensor h = silu_of_norm(in_norm_->forward(x));
  at::Tensor skip = x;
  if (h_up_) {
    h = h_up_->forward(h);
    skip = x_up_->forward(x);
  } else if (h_down_) {
    h = h_down_->forward(h);
    skip = x_down_->forward(x);
  }
  h = in_conv_->forward(h);
  // [N, C or 2C] -> [N, C or 2C, 1, 1], cast to the torso's dtype (fp16 training).
  at::Tensor emb_out = emb_linear_->forward(at::silu(emb)).to(h.scalar_type());
  emb_out = emb_out.unsqueeze(-1).unsqueeze(-1);
  if (options_.use_scale_shift_norm) {
    auto chunks = emb_out.chunk(2, 1);  // scale, shift: [N, C, 1, 1] each
    // out_norm(h) * (1 + scale) + shift in one pass
    h = at::addcmul(chunks[1], out_norm_->forward(h), 1 + chunks[0]);
  } else {
    h = out_norm_->forward(h + emb_out);
  }
  h = out_conv_->forward(dropout_->forward(silu_of_norm(h)));
  return residual_add(skip_conv_ ? skip_conv_->forward(skip) : skip, h);
}

}  // namespace idiff
