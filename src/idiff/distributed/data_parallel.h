// Data-parallel training on a DistContext, as the reference does it with MPI and
// PyTorch's DistributedDataParallel (improved_diffusion/dist_util.py: sync_params;
// train_util.py: the DDP-wrapped model): every rank starts from rank 0's parameters and
// every step applies the gradient averaged over ranks, so the ranks stay identical.
// TrainLoop averages the gradients with a GradReducer (grad_reducer.h), overlapped with
// the last microbatch's backward; average_gradients is the plain form it is tested against.
#pragma once

#include "idiff/distributed/dist_context.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace idiff {

// Overwrites the tensors (parameters, buffers, EMA copies) with rank 0's, in place; call
// at the start and after a resume. A no-op for a single process.
void sync_params(DistContext& ctx, const std::vector<at::Tensor>& tensors);

// Replaces each parameter's .grad() by its mean over ranks, in place. A parameter
// without a gradient gets a zero one first, so every rank sends the same buckets (as
// DDP's find_unused_parameters does). A no-op for a single process.
void average_gradients(DistContext& ctx, const std::vector<at::Tensor>& params);

}  // namespace idiff
