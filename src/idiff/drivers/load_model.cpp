#include "idiff/drivers/load_model.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"

namespace idiff {

UNetModel load_model(const ModelConfig& config, bool super_res, const std::string& path,
                     c10::Device device) {
  IDIFF_REQUIRE(!(config.use_fp16 && config.use_bf16), ConfigError,
                "`use_fp16` and `use_bf16` each choose the torso's precision: give one");
  const TensorMap sd = load_tensor_file(path);  // a bad file fails before the model is built
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
