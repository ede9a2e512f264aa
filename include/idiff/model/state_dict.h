// State dicts of modules: the reference's key order (module by module, pre-order, each
// module's parameters then buffers) and a strict loader that reports every missing,
// unexpected and mis-shaped key at once.
#pragma once

#include "idiff/io/tensor_map.h"

#include <torch/nn/module.h>

#include <optional>
#include <string>

namespace idiff {

// Parameters and buffers by dotted name, in PyTorch's state_dict order. The tensors are
// the module's own (not copies): detach/clone before mutating.
TensorMap state_dict(const torch::nn::Module& module);

// Copies every tensor of `sd` into the module's parameter/buffer of the same name,
// converting dtype as PyTorch's load_state_dict does. A 1x1 Conv2d weight [O, C, 1, 1] loads
// into a Conv1d weight [O, C, 1] (the same numbers): consistency_models' attention blocks
// are 2-d convolutions where guided-diffusion's are 1-d. Throws FileError naming `source`
// and listing all missing, unexpected and mis-shaped keys when they do not match exactly.
void load_state_dict(torch::nn::Module& module, const TensorMap& sd, const std::string& source);

// Whether a file tensor of shape `file` loads into a parameter of shape `model`: the same
// shape, or a 1x1 Conv2d weight into a Conv1d one.
bool loads_into(at::IntArrayRef file, at::IntArrayRef model);

// The state dict as consistency_models stores it: the attention's qkv and proj_out weights
// [O, C, 1] as 1x1 Conv2d weights [O, C, 1, 1] (views, no copy).
TensorMap with_conv2d_attention(const TensorMap& sd);
// Whether a file's attention is stored as consistency_models' 1x1 Conv2d weights (true) or
// as improved-/guided-diffusion's Conv1d ones (false); none without attention.
std::optional<bool> has_conv2d_attention(const TensorMap& sd);

// Number of parameter elements.
int64_t parameter_count(const torch::nn::Module& module);

}  // namespace idiff
