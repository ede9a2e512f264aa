// Guidance at sampling time, for every solver of the sampling engine, as maths on model
// outputs (the networks are bound by drivers/guided_models.h):
//  - classifier guidance (Dhariwal & Nichol 2021; guided-diffusion's classifier_sample.py):
//    a noisy-image classifier's gradient of log p(y | x_t) steers each step;
//  - classifier-free guidance (Ho & Salimans 2022): a model trained with a null label
//    predicts with and without the class, and the step follows
//    uncond + scale (cond - uncond).
#pragma once

#include "idiff/diffusion/model_fn.h"

namespace idiff {

// classifier_sample.py's cond_fn: scale x d/dx log softmax(logits(x, t))[y], summed over
// the batch (each sample's gradient is its own). `logits`: the classifier, (x, t) ->
// [N, classes]; y: [N] labels on its device. The classifier runs with gradients on a copy
// of x, also inside an InferenceMode region; a sampling loop that uses it must run eagerly
// (no CUDA graph).
CondFn classifier_cond_fn(ModelFn logits, at::Tensor y, double scale);

// Classifier-free guidance: `cond_and_uncond` is the model on the batch twice, [x; x] at
// [t; t], the first half with the labels and the second with the null label. The result is
// uncond + scale (cond - uncond) on the first C channels (epsilon or x_0); a learned
// variance keeps the conditional channels. scale 1 is the conditional model alone, 0 the
// unconditional one.
ModelFn classifier_free_guidance(ModelFn cond_and_uncond, double scale);

}  // namespace idiff
