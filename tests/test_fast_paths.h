// Checks of the fast paths against their plain twins that run on any device: the CPU suite
// calls them on the CPU (test_perf.cpp, test_model.cpp), the gpu label on CUDA
// (test_gpu_train.cpp), so the code of a GPU check has run before a GPU is lent.
#pragma once

#include "idiff/model/attention.h"
#include "idiff/train/adamw.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <utility>
#include <vector>

namespace idiff::test {

// Output and input gradient of qkv_attention for a fixed upstream gradient.
std::pair<at::Tensor, at::Tensor> attention_and_grad(const at::Tensor& qkv, AttentionImpl impl,
                                                     const at::Tensor& grad_out);

// `steps` AdamW updates (lr 1e-2, weight decay 0.05) of three parameters of different
// shapes on `device`, with the same seeded gradients whatever the device; returns the
// parameters, on the CPU.
std::vector<at::Tensor> run_adamw(AdamWOptions::Impl impl, int steps,
                                  const c10::Device& device = c10::Device(c10::kCPU));

// A small UNet with attention, with and without use_checkpoint, the same random weights,
// forward under bf16 autocast on `device` and backward after the scope has closed (as
// training does); returns the relative error of the checkpointed model's gradients
// against the plain one's (all parameters, concatenated).
double checkpoint_grad_error_under_autocast(const c10::Device& device);

}  // namespace idiff::test
