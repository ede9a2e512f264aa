#include "idiff/drivers/load_model.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"

namespace idiff {

ModelConfig family_model_config(const ModelConfig& model, const DiffusionConfig& diffusion) {
  ModelConfig m = model;
  if (is_karras(diffusion)) m.use_new_attention_order = true;
  return m;
}

namespace {

// consistency_models stores its attention projections as 1x1 Conv2d weights, improved- and
// guided-diffusion as Conv1d ones: a file with attention tells its family. Loading one
// family's weights as the other's would run (the shapes fit) and give wrong images, as the
// attention layouts differ.
void check_family(const TensorMap& sd, bool karras, const std::string& path) {
  for (const auto& [name, t] : sd) {
    if (name.size() < 11 || name.compare(name.size() - 11, 11, ".qkv.weight") != 0) continue;
    const bool cm = t.dim() == 4;
    IDIFF_REQUIRE(cm == karras, FileError, path, ": ",
                  cm ? "a consistency_models checkpoint (1x1 Conv2d attention weights): give "
                       "`training_mode` edm, consistency_distillation or consistency_training"
                     : "an improved-/guided-diffusion checkpoint (Conv1d attention weights), "
                       "not a Karras (EDM or consistency) model: drop `training_mode`");
    return;
  }
}

}  // namespace

UNetModel load_model(const ModelConfig& model_config, bool super_res, const std::string& path,
                     c10::Device device, bool karras) {
  ModelConfig config = model_config;
  if (karras) config.use_new_attention_order = true;  // consistency_models' "flash" layout
  IDIFF_REQUIRE(!(config.use_fp16 && config.use_bf16), ConfigError,
                "`use_fp16` and `use_bf16` each choose the torso's precision: give one");
  const TensorMap sd = load_tensor_file(path);  // a bad file fails before the model is built
  check_family(sd, karras, path);
  UNetModel model = super_res ? sr_create_model(config) : create_model(config);
  try {
    load_state_dict(*model, sd, path);
  } catch (const FileError& e) {
    std::string hint;
    try {
      const InferredModel inferred = infer_model_config(sd);
      if (inferred.is_unet) hint = inferred.flags;
    } catch (const Error&) {
    }
    throw FileError(str(e.what(), hint.empty() ? "" : "; the checkpoint looks like: " + hint));
  }
  model->to(device);
  if (config.use_fp16) model->convert_torso(at::kHalf);
  if (config.use_bf16) model->convert_torso(at::kBFloat16);
  model->eval();
  return model;
}

EncoderUNetModel load_classifier(const ClassifierConfig& config, int64_t image_size,
                                 int64_t image_channels, const std::string& path,
                                 c10::Device device) {
  const TensorMap sd = load_tensor_file(path);
  EncoderUNetModel classifier = create_classifier(config, image_size, image_channels);
  try {
    load_state_dict(*classifier, sd, path);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), " (a classifier for `image_size` ", image_size,
                        " with these `classifier_*` flags was expected)"));
  }
  classifier->to(device);
  if (config.classifier_use_fp16) classifier->convert_to_fp16();
  classifier->eval();
  return classifier;
}

}  // namespace idiff
