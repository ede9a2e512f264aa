// Helpers for the reference's 16-bit training (improved_diffusion/fp16_util.py): the model
// runs with float16 convolutions while the optimizer updates one flat float32 copy of all
// parameters (the "master" parameters); gradients are scaled by 2^lg_loss_scale in the
// backward and unscaled into the master gradient.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace idiff {

// One flat float32 tensor holding every parameter (requires_grad), as a one-element list.
std::vector<at::Tensor> make_master_params(const std::vector<at::Tensor>& model_params);

// master.grad = flat float32 copy of the model parameters' gradients.
void model_grads_to_master_grads(const std::vector<at::Tensor>& model_params,
                                 const std::vector<at::Tensor>& master_params);

// Copies the master values back into the (possibly float16) model parameters.
void master_params_to_model_params(const std::vector<at::Tensor>& model_params,
                                   const std::vector<at::Tensor>& master_params);

// Views of the flat master tensor shaped like each model parameter.
std::vector<at::Tensor> unflatten_master_params(const std::vector<at::Tensor>& model_params,
                                                const at::Tensor& flat);

// True when every defined gradient is finite (one host synchronisation).
bool grads_are_finite(const std::vector<at::Tensor>& params);

}  // namespace idiff
