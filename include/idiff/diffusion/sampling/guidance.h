// Guidance at sampling time, for every solver of the sampling engine:
//  - classifier guidance (Dhariwal & Nichol 2021; guided-diffusion's classifier_sample.py):
//    a noisy-image classifier's gradient of log p(y | x_t) steers each step;
//  - classifier-free guidance (Ho & Salimans 2022): a model trained with a null label
//    predicts with and without the class, and the step follows
//    uncond + scale (cond - uncond).
#pragma once

#include "idiff/diffusion/model_fn.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

namespace idiff {

// classifier_sample.py's cond_fn: scale x d/dx log softmax(classifier(x, t))[y], summed
// over the batch (each sample's gradient is its own). y: [N] labels on the classifier's
// device. The classifier runs with gradients on a copy of x, also inside an InferenceMode
// region; a sampling loop that uses it must run eagerly (no CUDA graph).
CondFn classifier_cond_fn(EncoderUNetModel classifier, at::Tensor y, double scale);

// Classifier-free guidance of `model` (built with a null label): one forward of the batch
// twice, with kwargs.y and with the null label, then uncond + scale (cond - uncond) on the
// first C channels (epsilon or x_0); a learned variance keeps the conditional channels.
// scale 1 is the conditional model alone, 0 the unconditional one.
ModelFn classifier_free_model_fn(UNetModel model, ModelKwargs kwargs, double scale);

}  // namespace idiff
