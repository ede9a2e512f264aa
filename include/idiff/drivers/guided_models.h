// The networks bound to the guidance maths of diffusion/sampling/guidance.h: a
// guided-diffusion classifier as classifier guidance's cond_fn, and a class-conditional
// UNet trained with a null label as a classifier-free guided ModelFn.
#pragma once

#include "idiff/diffusion/model_fn.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

namespace idiff {

// Classifier guidance with `classifier`: scale x d/dx log p(y | x_t) (classifier_cond_fn).
CondFn classifier_cond_fn(EncoderUNetModel classifier, at::Tensor y, double scale);

// Classifier-free guidance of `model` (built with a null label): one forward of the batch
// twice, with kwargs.y and with the null label (classifier_free_guidance). ConfigError
// when the model has no null label or kwargs no labels.
ModelFn classifier_free_model_fn(UNetModel model, ModelKwargs kwargs, double scale);

}  // namespace idiff
