#include "idiff/model/encoder_unet.h"

#include "idiff/common/error.h"
#include "idiff/model/unet_parts.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <cmath>

namespace idiff {

AttentionPool2dImpl::AttentionPool2dImpl(int64_t spatial_dim, int64_t embed_dim,
                                         int64_t num_head_channels, int64_t output_dim) {
  IDIFF_REQUIRE(num_head_channels > 0 && embed_dim % num_head_channels == 0, ConfigError,
                "the attention pool's ", embed_dim,
                " channels cannot be split into heads of `num_head_channels` ", num_head_channels);
  num_heads_ = embed_dim / num_head_channels;
  positional_embedding_ = register_parameter(
      "positional_embedding",
      at::randn({embed_dim, spatial_dim * spatial_dim + 1}) / std::sqrt(double(embed_dim)));
  qkv_proj_ = register_module(
      "qkv_proj", torch::nn::Conv1d(torch::nn::Conv1dOptions(embed_dim, 3 * embed_dim, 1)));
  c_proj_ = register_module("c_proj",
                            torch::nn::Conv1d(torch::nn::Conv1dOptions(embed_dim, output_dim, 1)));
}

at::Tensor AttentionPool2dImpl::pooled(const at::Tensor& x) {
  at::Tensor h = x.reshape({x.size(0), x.size(1), -1});  // [N, C, HW]
  IDIFF_REQUIRE(h.size(2) + 1 == positional_embedding_.size(1), Error,
                "the attention pool was built for ", positional_embedding_.size(1) - 1,
                " positions, got ", x.size(2), "x", x.size(3),
                " features (a different image size)");
  h = at::cat({h.mean(-1, /*keepdim=*/true), h}, -1);  // [N, C, HW + 1]
  h = h + positional_embedding_.unsqueeze(0).to(h.scalar_type());
  h = multi_head_attention(qkv_proj_->forward(h), num_heads_, /*new_order=*/true);
  return h.select(2, 0);  // the query at the mean position (c_proj is 1x1: it maps each alone)
}

at::Tensor AttentionPool2dImpl::forward(const at::Tensor& x) {
  return project(pooled(x));
}

at::Tensor AttentionPool2dImpl::project(const at::Tensor& pooled) {
  return c_proj_->forward(pooled.unsqueeze(2)).squeeze(2);
}

EncoderUNetModelImpl::EncoderUNetModelImpl(const EncoderUNetOptions& options) : options_(options) {
  const UNetOptions& o = options_.unet;
  IDIFF_REQUIRE(!o.channel_mult.empty(), ConfigError,
                "the classifier needs at least one channel_mult level");
  IDIFF_REQUIRE(o.num_res_blocks >= 1, ConfigError, "`classifier_depth` must be at least 1, got ",
                o.num_res_blocks);
  const std::string& pool = options_.pool;
  IDIFF_REQUIRE(
      pool == "adaptive" || pool == "attention" || pool == "spatial" || pool == "spatial_v2",
      ConfigError, "`classifier_pool` must be adaptive, attention, spatial or spatial_v2, got '",
      pool, "'");
  const int64_t mc = o.model_channels, time_embed_dim = 4 * mc;
  time_linear1_ = torch::nn::Linear(mc, time_embed_dim);
  time_embed_ = register_module(
      "time_embed", torch::nn::Sequential(time_linear1_, torch::nn::SiLU(),
                                          torch::nn::Linear(time_embed_dim, time_embed_dim)));
  DownPath down = make_down_path(o);
  input_blocks_list_ = register_module("input_blocks", torch::nn::ModuleList());
  int64_t feature_size = 0;
  for (size_t i = 0; i < down.blocks.size(); ++i) {
    input_blocks_list_->push_back(down.blocks[i]);
    input_blocks_.push_back(down.blocks[i]);
    feature_size += down.block_channels[i];
  }
  const int64_t ch = down.channels;
  feature_size += ch;
  middle_block_ = register_module("middle_block", make_middle_block(o, ch));

  torch::nn::Sequential out;
  const int64_t classes = o.out_channels;
  if (pool == "adaptive") {
    out->push_back(normalization(ch));
    out->push_back(torch::nn::SiLU());
    out->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions({1, 1})));
    out->push_back(zero_module(conv2d(ch, classes, 1)));
    out->push_back(torch::nn::Flatten());
  } else if (pool == "attention") {
    IDIFF_REQUIRE(o.num_head_channels > 0, ConfigError,
                  "`classifier_pool` attention needs `num_head_channels`");
    out->push_back(normalization(ch));
    out->push_back(torch::nn::SiLU());
    out->push_back(AttentionPool2d(options_.image_size / down.downsample_rate, ch,
                                   o.num_head_channels, classes));
  } else if (pool == "spatial") {
    out->push_back(torch::nn::Linear(feature_size, 2048));
    out->push_back(torch::nn::ReLU());
    out->push_back(torch::nn::Linear(2048, classes));
  } else {
    out->push_back(torch::nn::Linear(feature_size, 2048));
    out->push_back(normalization(2048));
    out->push_back(torch::nn::SiLU());
    out->push_back(torch::nn::Linear(2048, classes));
  }
  out_ = register_module("out", out);
}

at::Tensor EncoderUNetModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps) {
  return head(pooled_features(x, timesteps));
}

at::Tensor EncoderUNetModelImpl::pooled_features(const at::Tensor& x, const at::Tensor& timesteps) {
  const UNetOptions& o = options_.unet;
  IDIFF_REQUIRE(x.dim() == 4 && x.size(1) == o.in_channels, Error,
                "the classifier expects input [N, ", o.in_channels, ", H, W], got ", x.sizes());
  IDIFF_REQUIRE(timesteps.dim() == 1 && timesteps.size(0) == x.size(0), Error,
                "the classifier expects one timestep per sample ([", x.size(0), "]), got ",
                timesteps.sizes());
  IDIFF_REQUIRE(x.size(2) == options_.image_size && x.size(3) == options_.image_size, Error,
                "the classifier was built for ", options_.image_size, "x", options_.image_size,
                " images, got ", x.size(2), "x", x.size(3));
  const at::Tensor emb = time_embed_->forward(
      timestep_embedding(timesteps, o.model_channels).to(time_linear1_->weight.scalar_type()));
  const bool spatial = options_.pool.rfind("spatial", 0) == 0;
  std::vector<at::Tensor> means;
  at::Tensor h = x.to(input_blocks_.front()->parameters().front().scalar_type());
  for (auto& block : input_blocks_) {
    h = block->forward(h, emb);
    if (spatial) means.push_back(h.to(x.scalar_type()).mean({2, 3}));
  }
  h = middle_block_->forward(h, emb);
  if (spatial) {
    means.push_back(h.to(x.scalar_type()).mean({2, 3}));
    return at::cat(means, -1);
  }
  // adaptive: GroupNorm, SiLU, the spatial mean; attention: GroupNorm, SiLU, the pool's
  // attention output. What remains of out_ is the projection to the classes.
  h = out_[1]->as<torch::nn::SiLU>()->forward(
      out_[0]->as<GroupNorm32>()->forward(h.to(x.scalar_type())));
  if (options_.pool == "adaptive") return h.mean({2, 3});
  return out_[2]->as<AttentionPool2d>()->pooled(h);
}

at::Tensor EncoderUNetModelImpl::head(const at::Tensor& f) {
  if (options_.pool == "adaptive")
    return out_[3]
        ->as<torch::nn::Conv2d>()
        ->forward(f.view({f.size(0), f.size(1), 1, 1}))
        .flatten(1);
  if (options_.pool == "attention") return out_[2]->as<AttentionPool2d>()->project(f);
  return out_->forward(f);
}

void EncoderUNetModelImpl::convert_to_fp16() {
  convert_convolutions(*input_blocks_list_, at::kHalf);
  convert_convolutions(*middle_block_, at::kHalf);
}

void EncoderUNetModelImpl::convert_to_fp32() {
  convert_convolutions(*input_blocks_list_, at::kFloat);
  convert_convolutions(*middle_block_, at::kFloat);
}

}  // namespace idiff
