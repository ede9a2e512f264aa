// guided-diffusion's small fixture models (tests/data/adm_*), shared by the ADM, guidance,
// command-line and GPU tests: built from their flags with the formula weights.
#pragma once

#include "test_util.h"

#include "idiff/diffusion/model_fn.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

#include <c10/core/Device.h>

namespace idiff::test {

// adm_tiny (seed 21) and the classifier adm_cls_tiny (seed 22), in eval mode on the CPU.
UNetModel adm_tiny_model();
EncoderUNetModel adm_tiny_classifier();

// classifier_sample.py's 10-step ancestral loop of adm_tiny.guided.safetensors (`io`) on
// `device`, from its x_T with its per-step noise; cond_fn: the guidance (none: unguided).
at::Tensor adm_guided_trajectory(const ModelFn& model, const CondFn& cond_fn, const TensorMap& io,
                                 c10::Device device);

// --use_fp16 / --use_bf16 on `device`: adm_tiny written to a file and loaded with each; the
// torso has that dtype and the outputs stay close to guided-diffusion's float32 numbers.
void expect_low_precision_torsos_match(c10::Device device);

}  // namespace idiff::test
