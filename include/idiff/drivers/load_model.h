// Loading a checkpoint into the model its flags describe, for sampling and evaluation
// (reference: the scripts' model.load_state_dict(dist_util.load_state_dict(path))).
#pragma once

#include "idiff/config.h"
#include "idiff/model/unet.h"

#include <c10/core/Device.h>

#include <string>

namespace idiff {

// Builds the model the flags describe and loads `path` (.pt or .safetensors, model or EMA
// file) into it, in eval mode on `device`. When the file does not fit the flags the error
// lists the mismatched keys and the flags the checkpoint implies.
UNetModel load_model(const ModelConfig& config, bool super_res, const std::string& path,
                     c10::Device device);

}  // namespace idiff
