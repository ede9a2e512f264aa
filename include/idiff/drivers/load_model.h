// Loading a checkpoint into the model its flags describe, for sampling and evaluation
// (reference: the scripts' model.load_state_dict(dist_util.load_state_dict(path))).
#pragma once

#include "idiff/config.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

#include <c10/core/Device.h>

#include <string>
#include <utility>
#include <vector>

namespace idiff {

// The UNet settings of the model family: consistency_models' UNet (a Karras --training_mode)
// always splits q, k and v before the heads (its "flash" attention layout).
ModelConfig family_model_config(const ModelConfig& model, const DiffusionConfig& diffusion);

// The model and diffusion flags a training run writes beside its checkpoints
// (`flags.json` in the log folder), so that a command loading one of them can take them as
// defaults: --image_size, --num_channels, ..., --noise_schedule, --training_mode, ...
// with their values as the command line spells them; a class-conditional model's class names
// (the data's, in label order) beside them.
void write_model_flags(const std::string& dir, const ModelConfig& model,
                       const DiffusionConfig& diffusion,
                       const std::vector<std::string>& class_names = {});
// The flags of the checkpoint `path`: the flags.json beside it, or none (the reference's
// files, or a folder without it). A malformed file is a FileError naming it.
std::vector<std::pair<std::string, std::string>> read_model_flags(const std::string& path,
                                                                  std::string* source = nullptr);
// The class names in the flags.json beside the checkpoint `path` (label i is names[i]), or
// none.
std::vector<std::string> read_class_names(const std::string& path);
// --class as labels: each item an integer or one of `names`; a ConfigError naming the item
// and the names otherwise.
std::vector<int64_t> parse_classes(const std::string& text, const std::vector<std::string>& names);

// Builds the model the flags describe and loads `path` (.pt or .safetensors, model or EMA
// file) into it, in eval mode on `device`. When the file does not fit the flags the error
// lists the mismatched keys and the flags the checkpoint implies. config.use_fp16: the
// torso is converted to float16 after loading (guided-diffusion's use_fp16); use_bf16: to
// bfloat16. karras: a Karras denoiser's network (consistency_models' UNet, whose attention
// splits q, k, v first); a file of the other family is a FileError saying which it is.
UNetModel load_model(const ModelConfig& config, bool super_res, const std::string& path,
                     c10::Device device, bool karras = false);

// The noisy-image classifier the flags describe for image_size, loaded from `path`
// (guided-diffusion's *_classifier.pt), in eval mode on `device`, its torso in float16
// with classifier_use_fp16; as many classes as the file's head has (1000 for
// guided-diffusion's, the data's for `idiff classifier-train`'s). Errors as load_model's.
EncoderUNetModel load_classifier(const ClassifierConfig& config, int64_t image_size,
                                 int64_t image_channels, const std::string& path,
                                 c10::Device device);

}  // namespace idiff
