// Exponential moving averages of the parameters (reference: nn.update_ema), one set per
// rate of --ema_rate: target = rate * target + (1 - rate) * source, as two multi-tensor
// operations (element-wise the same arithmetic as the reference's per-tensor loop).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace idiff {

void update_ema(const std::vector<at::Tensor>& targets, const std::vector<at::Tensor>& sources,
                double rate);

// Copies of the tensors (detached, contiguous), the starting point of an EMA.
std::vector<at::Tensor> clone_tensors(const std::vector<at::Tensor>& tensors);

}  // namespace idiff
