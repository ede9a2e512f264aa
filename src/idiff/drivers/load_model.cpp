#include "idiff/drivers/load_model.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/infer_config.h"
#include "idiff/model/state_dict.h"

namespace idiff {

UNetModel load_model(const ModelConfig& config, bool super_res, const std::string& path,
                     c10::Device device) {
  UNetModel model = super_res ? sr_create_model(config) : create_model(config);
  const TensorMap sd = load_tensor_file(path);
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
  model->eval();
  return model;
}

}  // namespace idiff
