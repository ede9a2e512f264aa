#include "idiff/model/inspect/infer_config.h"

#include "idiff/common/error.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

namespace idiff {
namespace {

std::string yes_no(bool b) {
  return b ? "True" : "False";
}

template <typename T>
std::string join(const std::vector<T>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += str(i ? "," : "", v[i]);
  return s;
}

// Size of dimension `dim` of tensor `name`, or -1 when absent.
int64_t dim_of(const TensorMap& sd, const std::string& name, int64_t dim) {
  const at::Tensor* t = sd.find(name);
  return t && t->dim() > dim ? t->size(dim) : -1;
}

struct InputBlock {
  bool res = false;        // a ResBlock (else a Downsample)
  bool attention = false;  // followed by an AttentionBlock
  int64_t out_channels = 0;
};

}  // namespace

InferredModel infer_model_config(const TensorMap& sd) {
  InferredModel m;
  // model_channels: the time embedding's input (the stem has int(channel_mult[0] * it)).
  const int64_t mc = dim_of(sd, "time_embed.0.weight", 1);
  const int64_t in_ch = dim_of(sd, "input_blocks.0.0.weight", 1);
  const int64_t out_ch = dim_of(sd, "out.2.weight", 0);
  if (mc <= 0 || out_ch <= 0 || in_ch <= 0 || !sd.contains("output_blocks.0.0.in_layers.2.weight"))
    return m;  // not a UNet (a classifier has no up path)
  m.is_unet = true;
  ModelConfig& c = m.config;
  c.num_channels = mc;
  // Image channels C: 3 (RGB, every reference model) or 1 (grey, --image_channels 1); the
  // input has C channels (2C for super-resolution), the output C (2C with learned sigma).
  const int64_t channels = in_ch % 3 == 0 ? 3 : 1;
  c.image_channels = channels;
  m.super_res = in_ch == 2 * channels;
  c.learn_sigma = out_ch == 2 * channels;
  if (in_ch != channels && in_ch != 2 * channels)
    m.notes.push_back(str("the model takes ", in_ch, " input channels; idiff's take ", channels,
                          " (", 2 * channels, " for super-resolution)"));
  if (out_ch != channels && out_ch != 2 * channels)
    m.notes.push_back(str("the model has ", out_ch, " output channels; idiff's have ", channels,
                          ", or ", 2 * channels, " with learned sigma"));
  m.num_classes = dim_of(sd, "label_emb.weight", 0);
  c.class_cond = m.num_classes > 0;
  if (c.class_cond && m.num_classes == kNumClasses + 1) {
    m.num_classes = kNumClasses;
    c.class_dropout_prob = 0.1;
    m.notes.push_back(
        "label_emb has the null label's row (classifier-free guidance): any "
        "--class_dropout_prob > 0 builds it (the share used in training is not stored)");
  } else if (c.class_cond && m.num_classes != kNumClasses) {
    m.notes.push_back(
        str("label_emb has ", m.num_classes, " classes; --class_cond True builds ", kNumClasses));
  }
  if (!c.class_cond) m.num_classes = 0;

  // The down path, block by block: input_blocks.<k>.0 is a ResBlock or a Downsample.
  std::map<int64_t, InputBlock> blocks;
  const std::string prefix = "input_blocks.";
  for (const auto& [name, t] : sd) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t dot = name.find('.', prefix.size());
    int64_t k = -1;
    try {
      k = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
    } catch (const std::exception&) {
      continue;
    }
    if (k <= 0) continue;
    blocks[k];  // a block without parameters is an average-pool Downsample
  }
  const int64_t last = blocks.empty() ? 0 : blocks.rbegin()->first;
  // resblock_updown (guided-diffusion): the up path's resampling is a ResBlock after the
  // first child (its plain Upsample has conv.weight), so each level's last down block is a
  // ResBlock too; the level count comes from the up path.
  int64_t up_blocks = 0;
  for (int64_t k = 0;; ++k) {
    const std::string b = "output_blocks." + std::to_string(k) + ".";
    if (!sd.contains(b + "0.in_layers.2.weight")) break;
    if (sd.contains(b + "1.in_layers.2.weight") || sd.contains(b + "2.in_layers.2.weight"))
      ++up_blocks;
  }
  c.resblock_updown = up_blocks > 0;
  const int64_t per_level = (last + 1) / (up_blocks + 1);  // num_res_blocks + 1
  std::vector<std::vector<InputBlock>> levels(1);
  for (int64_t k = 1; k <= last; ++k) {
    const std::string b = prefix + std::to_string(k) + ".";
    InputBlock blk;
    blk.res = sd.contains(b + "0.in_layers.2.weight") &&
              !(c.resblock_updown && per_level > 0 && k % per_level == 0);
    if (blk.res) {
      blk.out_channels = dim_of(sd, b + "0.out_layers.3.weight", 0);
      blk.attention = sd.contains(b + "1.qkv.weight");
      levels.back().push_back(blk);
    } else {
      levels.emplace_back();
    }
  }
  c.num_res_blocks = static_cast<int64_t>(levels.front().size());
  bool regular = c.num_res_blocks > 0;
  std::set<int64_t> attention_ds;
  for (size_t level = 0; level < levels.size(); ++level) {
    const auto& l = levels[level];
    if (static_cast<int64_t>(l.size()) != c.num_res_blocks || l.empty()) {
      regular = false;
      break;
    }
    m.channel_mult.push_back(static_cast<double>(l.front().out_channels) / mc);
    for (const auto& blk : l) {
      if (blk.attention) attention_ds.insert(int64_t{1} << level);
    }
  }
  if (!regular) {
    m.notes.push_back("the down path does not have the same number of ResBlocks on every level");
  }
  c.use_scale_shift_norm = dim_of(sd, prefix + "1.0.emb_layers.1.weight", 0) ==
                           2 * dim_of(sd, prefix + "1.0.out_layers.3.weight", 0);

  // The image size is the one whose channel_mult this is.
  int64_t size = 0;
  for (int64_t candidate : {32, 64, 128, 256, 512}) {
    if (channel_mult_for(candidate) == m.channel_mult) size = candidate;
  }
  m.image_size_known = size > 0 && regular;
  if (m.image_size_known && m.super_res && size == 256) {
    m.notes.push_back(
        "guided-diffusion's 512x512 upsampler has these levels too: with `--large_size 512` "
        "the attention resolutions double");
  }
  std::vector<int64_t> resolutions;
  for (auto it = attention_ds.rbegin(); it != attention_ds.rend(); ++it) {
    resolutions.push_back(m.image_size_known ? size / *it : *it);
  }
  std::sort(resolutions.rbegin(), resolutions.rend());
  if (m.image_size_known) {
    (m.super_res ? c.large_size : c.image_size) = size;
    c.attention_resolutions = join(resolutions);
  } else {
    m.notes.push_back(
        str("channel_mult (", join(m.channel_mult),
            ") is not one the references use for an image size (32, 64, 128, 256, 512); attention "
            "sits at downsample rates ",
            join(resolutions)));
  }

  std::string f;
  if (m.image_size_known) f += str(m.super_res ? "--large_size " : "--image_size ", size, " ");
  f += str("--num_channels ", mc, " --num_res_blocks ", c.num_res_blocks, " --learn_sigma ",
           yes_no(c.learn_sigma), " --class_cond ", yes_no(c.class_cond));
  if (m.image_size_known)
    f += str(" --attention_resolutions ", c.attention_resolutions);
  else
    f += str(" --channel_mult ", join(m.channel_mult));
  f += str(" --use_scale_shift_norm ", yes_no(c.use_scale_shift_norm));
  if (c.resblock_updown) f += " --resblock_updown True";
  if (has_conv2d_attention(sd).value_or(false)) {  // consistency_models' layout
    f += " --training_mode edm";
    m.notes.push_back(
        "a consistency_models file (1x1 Conv2d attention weights): --training_mode edm for its "
        "EDM models, consistency_distillation or consistency_training for its consistency models "
        "(the weights do not say which)");
  } else if (c.resblock_updown) {
    f += " --defaults guided-diffusion";
  }
  if (c.class_dropout_prob > 0) f += " --class_dropout_prob 0.1";
  if (channels != 3) f += str(" --image_channels ", channels);
  m.flags = f;
  m.notes.push_back(
      str("num_heads, num_heads_upsample, num_head_channels, use_new_attention_order, dropout "
          "and use_checkpoint are not stored in the weights",
          m.super_res ? ", nor is small_size" : ""));
  m.notes.push_back(
      "rescale_timesteps and rescale_learned_sigmas are not stored either: improved-diffusion's "
      "checkpoints want its defaults (True), guided-diffusion's --defaults guided-diffusion "
      "(False)");
  return m;
}

}  // namespace idiff
