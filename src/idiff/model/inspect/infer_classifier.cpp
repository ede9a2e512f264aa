// infer_classifier_config (declared in infer_config.h): guided-diffusion's classifier from
// the shapes of its state dict.
#include "idiff/common/error.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

int64_t size_of(const TensorMap& sd, const std::string& name, int64_t dim) {
  const at::Tensor* t = sd.find(name);
  return t && t->dim() > dim ? t->size(dim) : -1;
}

struct DownBlock {
  bool res = false;  // a ResBlock (else a Downsample)
  int64_t out_channels = 0;
  bool attention = false;
};

}  // namespace

InferredClassifier infer_classifier_config(const TensorMap& sd) {
  InferredClassifier r;
  const int64_t width = size_of(sd, "time_embed.0.weight", 1);
  if (width <= 0 || sd.contains("output_blocks.0.0.in_layers.2.weight") ||
      !sd.contains("input_blocks.0.0.weight")) {
    return r;
  }
  ClassifierConfig& c = r.config;
  c.classifier_width = width;
  if (sd.contains("out.2.positional_embedding")) {
    c.classifier_pool = "attention";
    r.num_classes = size_of(sd, "out.2.c_proj.weight", 0);
  } else if (size_of(sd, "out.3.weight", 3) > 0) {
    c.classifier_pool = "adaptive";
    r.num_classes = size_of(sd, "out.3.weight", 0);
  } else if (sd.contains("out.1.weight")) {
    c.classifier_pool = "spatial_v2";
    r.num_classes = size_of(sd, "out.3.weight", 0);
  } else if (sd.contains("out.2.weight")) {
    c.classifier_pool = "spatial";
    r.num_classes = size_of(sd, "out.2.weight", 0);
  } else {
    return r;
  }
  r.is_classifier = true;
  c.classifier_use_scale_shift_norm = size_of(sd, "input_blocks.1.0.emb_layers.1.weight", 0) ==
                                      2 * size_of(sd, "input_blocks.1.0.out_layers.3.weight", 0);
  std::vector<DownBlock> blocks;  // input_blocks.1 ...
  for (int64_t k = 1;; ++k) {
    const std::string b = "input_blocks." + std::to_string(k) + ".";
    DownBlock blk;
    blk.res = sd.contains(b + "0.in_layers.2.weight");
    if (!blk.res && !sd.contains(b + "0.op.weight")) break;
    blk.out_channels = size_of(sd, b + "0.out_layers.3.weight", 0);
    blk.attention = sd.contains(b + "1.qkv.weight");
    blocks.push_back(blk);
  }
  // The image size whose levels fit: (depth + 1) blocks per level but the last, ResBlocks of
  // int(mult * width) channels, a downsampling block (a ResBlock with resblock_updown) at
  // the end of every level but the last.
  for (int64_t size : {32, 64, 128, 256, 512}) {
    const std::vector<double> mult = channel_mult_for(size);
    const auto levels = static_cast<int64_t>(mult.size());
    const auto n = static_cast<int64_t>(blocks.size());
    if ((n + 1) % levels != 0 || (n + 1) / levels < 2) continue;
    const int64_t depth = (n + 1) / levels - 1;
    bool fits = true, updown = false;
    std::vector<int64_t> attention;
    for (int64_t i = 0; i < n && fits; ++i) {
      const int64_t level = i / (depth + 1), pos = i % (depth + 1);
      const DownBlock& blk = blocks[static_cast<size_t>(i)];
      if (pos == depth) {
        updown = blk.res;
        continue;
      }
      fits = blk.res && blk.out_channels == level_channels(mult[static_cast<size_t>(level)], width);
      if (blk.attention && (attention.empty() || attention.back() != size >> level))
        attention.push_back(size >> level);
    }
    if (!fits) continue;
    r.image_size = size;
    c.classifier_depth = depth;
    c.classifier_resblock_updown = updown;
    std::string res;
    for (int64_t a : attention) res += (res.empty() ? "" : ",") + std::to_string(a);
    c.classifier_attention_resolutions = res;
    break;
  }
  auto b = [](bool v) { return v ? "True" : "False"; };
  if (r.image_size > 0) {
    r.flags =
        str("--image_size ", r.image_size, " --classifier_width ", width, " --classifier_depth ",
            c.classifier_depth, " --classifier_attention_resolutions ",
            c.classifier_attention_resolutions, " --classifier_use_scale_shift_norm ",
            b(c.classifier_use_scale_shift_norm), " --classifier_resblock_updown ",
            b(c.classifier_resblock_updown), " --classifier_pool ", c.classifier_pool);
  } else {
    r.notes.push_back(
        "the down path fits no image size guided-diffusion defines (64, 128, 256, 512)");
  }
  if (r.num_classes != kNumClasses) {
    r.notes.push_back(str("the classifier has ", r.num_classes,
                          " classes (guided-diffusion's have ", kNumClasses,
                          "); guidance draws labels among them"));
  }
  r.notes.push_back("classifier_use_fp16 is not stored in the weights");
  return r;
}

}  // namespace idiff
