#include "idiff/model/unet.h"

#include "idiff/model/unet_parts.h"

#include "idiff/common/autocast.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>

#include <algorithm>

namespace idiff {
namespace {

bool contains(const std::vector<int64_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

ResBlock make_res_block(const UNetOptions& o, int64_t in, int64_t out, bool up, bool down) {
  ResBlockOptions r;
  r.up = up;
  r.down = down;
  r.channels = in;
  r.emb_channels = o.model_channels * 4;
  r.dropout = o.dropout;
  r.out_channels = out;
  r.use_scale_shift_norm = o.use_scale_shift_norm;
  r.use_checkpoint = o.use_checkpoint;
  return ResBlock(r);
}

AttentionBlock make_attention(const UNetOptions& o, int64_t channels, int64_t heads) {
  if (o.num_head_channels > 0) {
    IDIFF_REQUIRE(channels % o.num_head_channels == 0, ConfigError, "attention with ", channels,
                  " channels cannot be split into heads of `num_head_channels` ",
                  o.num_head_channels);
    heads = channels / o.num_head_channels;
  }
  return AttentionBlock(channels, heads, o.use_checkpoint, o.use_new_attention_order);
}

DownPath make_down_path(const UNetOptions& o) {
  const int64_t mc = o.model_channels;
  DownPath p;
  int64_t ch = level_channels(o.channel_mult.front(), mc), ds = 1;
  {
    TimestepEmbedSequential stem;
    stem->push_back(conv2d(o.in_channels, ch, 3, 1));
    p.blocks.push_back(stem);
  }
  p.block_channels = {ch};
  const auto levels = static_cast<int64_t>(o.channel_mult.size());
  for (int64_t level = 0; level < levels; ++level) {
    for (int64_t i = 0; i < o.num_res_blocks; ++i) {
      TimestepEmbedSequential s;
      s->push_back(make_res_block(o, ch, level_channels(o.channel_mult[level], mc)));
      ch = level_channels(o.channel_mult[level], mc);
      if (contains(o.attention_resolutions, ds)) s->push_back(make_attention(o, ch, o.num_heads));
      p.blocks.push_back(s);
      p.block_channels.push_back(ch);
    }
    if (level != levels - 1) {
      TimestepEmbedSequential s;
      if (o.resblock_updown) {
        s->push_back(make_res_block(o, ch, ch, false, true));
      } else {
        s->push_back(Downsample(ch, o.conv_resample));
      }
      p.blocks.push_back(s);
      p.block_channels.push_back(ch);
      ds *= 2;
    }
  }
  p.channels = ch;
  p.downsample_rate = ds;
  return p;
}

void convert_convolutions(torch::nn::Module& module, at::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  for (auto& sub : module.modules(/*include_self=*/true)) {
    const bool is_conv = dynamic_cast<torch::nn::Conv1dImpl*>(sub.get()) != nullptr ||
                         dynamic_cast<torch::nn::Conv2dImpl*>(sub.get()) != nullptr;
    if (!is_conv) continue;
    for (auto& p : sub->parameters(/*recurse=*/false)) p.set_data(p.data().to(dtype));
  }
}

TimestepEmbedSequential make_middle_block(const UNetOptions& o, int64_t channels) {
  TimestepEmbedSequential m;
  m->push_back(make_res_block(o, channels, channels));
  m->push_back(make_attention(o, channels, o.num_heads));
  m->push_back(make_res_block(o, channels, channels));
  return m;
}

UNetModelImpl::UNetModelImpl(const UNetOptions& options) : options_(options) {
  const UNetOptions& o = options_;
  if (options_.num_heads_upsample == -1) options_.num_heads_upsample = o.num_heads;
  IDIFF_REQUIRE(!o.channel_mult.empty(), ConfigError,
                "the UNet needs at least one channel_mult level");
  IDIFF_REQUIRE(o.num_res_blocks >= 1, ConfigError, "`num_res_blocks` must be at least 1, got ",
                o.num_res_blocks);
  const int64_t mc = o.model_channels;
  const int64_t time_embed_dim = mc * 4;

  time_linear1_ = torch::nn::Linear(mc, time_embed_dim);
  time_linear2_ = torch::nn::Linear(time_embed_dim, time_embed_dim);
  time_embed_ = register_module(
      "time_embed", torch::nn::Sequential(time_linear1_, torch::nn::SiLU(), time_linear2_));
  if (o.num_classes > 0) {
    label_emb_ = register_module(
        "label_emb", torch::nn::Embedding(o.num_classes + (o.null_label ? 1 : 0), time_embed_dim));
  }

  // Down path: a stem conv, then num_res_blocks ResBlocks (+ attention) per level and a
  // Downsample between levels; the block channels are the skips of the up path.
  DownPath down = make_down_path(o);
  input_blocks_list_ = register_module("input_blocks", torch::nn::ModuleList());
  for (auto& block : down.blocks) {
    input_blocks_list_->push_back(block);
    input_blocks_.push_back(block);
  }
  std::vector<int64_t> input_block_chans = down.block_channels;
  int64_t ch = down.channels, ds = down.downsample_rate;
  const auto levels = static_cast<int64_t>(o.channel_mult.size());
  middle_block_ = register_module("middle_block", make_middle_block(o, ch));

  // Up path: num_res_blocks + 1 ResBlocks per level, each taking the matching skip.
  output_blocks_list_ = register_module("output_blocks", torch::nn::ModuleList());
  for (int64_t level = levels - 1; level >= 0; --level) {
    for (int64_t i = 0; i <= o.num_res_blocks; ++i) {
      TimestepEmbedSequential s;
      const int64_t skip = input_block_chans.back();
      input_block_chans.pop_back();
      s->push_back(make_res_block(o, ch + skip, level_channels(o.channel_mult[level], mc)));
      ch = level_channels(o.channel_mult[level], mc);
      if (contains(o.attention_resolutions, ds)) {
        s->push_back(make_attention(o, ch, options_.num_heads_upsample));
      }
      if (level > 0 && i == o.num_res_blocks) {
        if (o.resblock_updown) {
          s->push_back(make_res_block(o, ch, ch, true, false));
        } else {
          s->push_back(Upsample(ch, o.conv_resample));
        }
        ds /= 2;
      }
      output_blocks_list_->push_back(s);
      output_blocks_.push_back(s);
    }
  }

  out_norm_ = normalization(ch);
  out_conv_ = zero_module(conv2d(ch, o.out_channels, 3, 1));
  out_ = register_module("out", torch::nn::Sequential(out_norm_, torch::nn::SiLU(), out_conv_));
}

at::Tensor UNetModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps,
                                  const at::Tensor& y) {
  IDIFF_REQUIRE(x.dim() == 4 && x.size(1) == options_.in_channels, Error,
                "the model expects input [N, ", options_.in_channels, ", H, W], got ", x.sizes());
  return forward_checked(x, timesteps, y);
}

at::Tensor UNetModelImpl::forward_checked(const at::Tensor& x, const at::Tensor& timesteps,
                                          const at::Tensor& y) {
  const bool cond = options_.num_classes > 0;
  IDIFF_REQUIRE(y.defined() == cond, Error,
                cond ? "this model is class-conditional: labels y are required"
                     : "this model is not class-conditional: labels y were given");
  IDIFF_REQUIRE(timesteps.dim() == 1 && timesteps.size(0) == x.size(0), Error,
                "the model expects one timestep per sample ([", x.size(0), "]), got ",
                timesteps.sizes());
  const int64_t factor = int64_t{1} << (options_.channel_mult.size() - 1);
  IDIFF_REQUIRE(x.size(2) % factor == 0 && x.size(3) % factor == 0, Error, "image size ", x.size(2),
                "x", x.size(3), " is not divisible by ", factor, " (the UNet halves it ",
                options_.channel_mult.size() - 1, " times)");

  // The embedding is float32 as in the reference; it follows the time MLP's dtype so
  // that a float64 model (used by precise tests) runs too.
  at::Tensor emb = time_embed_->forward(timestep_embedding(timesteps, options_.model_channels)
                                            .to(time_linear1_->weight.scalar_type()));
  if (cond) {
    IDIFF_REQUIRE(y.dim() == 1 && y.size(0) == x.size(0), Error, "labels y must be [", x.size(0),
                  "], got ", y.sizes());
    emb = emb + label_emb_->forward(y);
  }
  std::vector<at::Tensor> hs;
  hs.reserve(input_blocks_.size());
  at::Tensor h = x.to(inner_dtype());
  for (auto& block : input_blocks_) {
    h = block->forward(h, emb);
    hs.push_back(h);
  }
  h = middle_block_->forward(h, emb);
  for (auto& block : output_blocks_) {
    at::Tensor cat_in = at::cat({h, hs.back()}, 1);
    hs.pop_back();
    h = block->forward(cat_in, emb);
  }
  // The output head in x's precision under autocast too (bf16 training), as the
  // reference's fp16 path keeps it: eps and the variance interpolation in float32.
  const AutocastOff full_precision_head(x.device().type());
  return out_conv_->forward(silu_of_norm(out_norm_->forward(h.to(x.scalar_type()))));
}

at::Tensor UNetModelImpl::forward_kwargs(const at::Tensor& x, const at::Tensor& timesteps,
                                         const ModelKwargs& kwargs) {
  IDIFF_REQUIRE(!kwargs.low_res.defined(), Error,
                "this model is not a super-resolution model: low_res was given");
  return forward(x, timesteps, kwargs.y);
}

void UNetModelImpl::convert_torso(at::ScalarType dtype) {
  convert_convolutions(*input_blocks_list_, dtype);
  convert_convolutions(*middle_block_, dtype);
  convert_convolutions(*output_blocks_list_, dtype);
}

at::ScalarType UNetModelImpl::inner_dtype() const {
  return input_blocks_.front()->parameters().front().scalar_type();
}

void UNetModelImpl::convert_to_fp16() {
  convert_torso(at::kHalf);
}
void UNetModelImpl::convert_to_fp32() {
  convert_torso(at::kFloat);
}

void UNetModelImpl::set_attention_impl(AttentionImpl impl) {
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* block = module->as<AttentionBlockImpl>()) block->set_impl(impl);
  }
}

SuperResModelImpl::SuperResModelImpl(UNetOptions options)
    : UNetModelImpl([&] {
        options.in_channels *= 2;
        return options;
      }()) {}

at::Tensor SuperResModelImpl::forward(const at::Tensor& x, const at::Tensor& timesteps,
                                      const at::Tensor& low_res, const at::Tensor& y) {
  const int64_t image_channels = options().in_channels / 2;
  IDIFF_REQUIRE(x.dim() == 4 && x.size(1) == image_channels, Error,
                "the super-resolution model expects input [N, ", image_channels, ", H, W], got ",
                x.sizes());
  IDIFF_REQUIRE(low_res.defined() && low_res.dim() == 4 && low_res.size(0) == x.size(0) &&
                    low_res.size(1) == image_channels,
                Error, "the super-resolution model needs low_res [", x.size(0), ", ",
                image_channels, ", h, w]",
                low_res.defined() ? str(", got ", low_res.sizes()) : std::string(", got none"));
  at::Tensor upsampled =
      at::upsample_bilinear2d(low_res, {x.size(2), x.size(3)}, /*align_corners=*/false);
  return forward_checked(at::cat({x, upsampled}, 1), timesteps, y);
}

at::Tensor SuperResModelImpl::forward_kwargs(const at::Tensor& x, const at::Tensor& timesteps,
                                             const ModelKwargs& kwargs) {
  return forward(x, timesteps, kwargs.low_res, kwargs.y);
}

}  // namespace idiff
