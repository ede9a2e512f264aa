// Recovering the model flags from a UNet state dict (for `idiff info CKPT`), by reading
// the layout create_model builds (reference: unet.py, script_util.py): the stem conv
// gives num_channels and the input channels (6 for a super-resolution model), the
// output conv learn_sigma, label_emb class_cond, the down path's blocks num_res_blocks,
// the channel multipliers (hence the image size) and where attention sits, and the
// ResBlocks' embedding projection use_scale_shift_norm. Works on shapes only (meta
// tensors will do). num_heads, dropout and use_checkpoint leave no trace in the weights.
#pragma once

#include "idiff/config.h"
#include "idiff/io/tensor_map.h"

#include <string>
#include <vector>

namespace idiff {

struct InferredModel {
  bool is_unet = false;           // the keys look like the reference's UNetModel
  bool super_res = false;         // SuperResModel (twice the image channels in)
  bool image_size_known = false;  // channel_mult is one of the reference's
  ModelConfig config;             // inferred fields set; the others keep their defaults
  std::vector<double> channel_mult;
  int64_t num_classes = 0;
  std::string flags;               // paste-able: "--image_size 32 --num_channels 128 ..."
  std::vector<std::string> notes;  // what could not be inferred, and why
};

InferredModel infer_model_config(const TensorMap& state_dict);

// The same for guided-diffusion's noisy-image classifier (EncoderUNetModel): width, depth,
// pool, scale-shift norm, resblock_updown, the image size (the one whose channel_mult
// matches) and where attention sits. classifier_use_fp16 leaves no trace.
struct InferredClassifier {
  bool is_classifier = false;
  ClassifierConfig config;
  int64_t image_size = 0;  // 0: not found
  int64_t num_classes = 0;
  std::string flags;
  std::vector<std::string> notes;
};

InferredClassifier infer_classifier_config(const TensorMap& state_dict);

}  // namespace idiff
