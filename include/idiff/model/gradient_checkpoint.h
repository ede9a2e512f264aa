// Gradient checkpointing (reference: nn.py checkpoint / CheckpointFunction): run a block's
// forward without keeping its activations, and run it again inside the backward to get
// the gradients of its inputs and parameters.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace idiff {

using TensorFn = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

// Returns fn(inputs). When `enabled` and autograd is recording, fn runs under no_grad and
// is re-run in the backward pass; `params` are the tensors fn uses besides its inputs
// (the block's parameters), which receive gradients as usual. `fn` must stay alive until
// the backward has run (blocks pass a member they own). The random-number state of the
// inputs' device is restored for the re-run when `preserve_rng` is set, so dropout draws
// the same mask twice (the reference draws a new one; ours gives the true gradient).
std::vector<at::Tensor> checkpoint(const TensorFn& fn, const std::vector<at::Tensor>& inputs,
                                   const std::vector<at::Tensor>& params, bool enabled,
                                   bool preserve_rng = false);

}  // namespace idiff
