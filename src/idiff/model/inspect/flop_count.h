// Analytic FLOP count of a UNet forward pass (the reference counts attention the same way
// in QKVAttention.count_flops, for the thop package). Walks the model block by block,
// tracking the feature-map size, and counts every multiply-add of the convolutions, the
// linear layers and the two attention matrix products as 2 FLOPs. Normalisations,
// activations, biases and element-wise ops are left out (under 1% of the total).
#pragma once

#include "idiff/model/unet.h"

#include <cstdint>

namespace idiff {

struct FlopCount {
  double conv = 0;       // 1-D and 2-D convolutions (qkv and proj_out of attention included)
  double linear = 0;     // time embedding MLP and the ResBlocks' embedding projections
  double attention = 0;  // q^T k and weights x v, 2 * 2 * T^2 * C per attention block
  double total() const { return conv + linear + attention; }
};

// FLOPs of one forward pass of `model` on one image of height x width.
FlopCount count_forward_flops(const UNetModelImpl& model, int64_t height, int64_t width);

// FLOPs of one training step on `batch` images: forward plus backward, the backward taken as
// twice the forward (input and weight gradients), the usual model-FLOPs convention (the
// recomputation of --use_checkpoint is not counted).
double training_step_flops(const UNetModelImpl& model, int64_t height, int64_t width,
                           int64_t batch);

}  // namespace idiff
