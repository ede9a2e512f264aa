// How the diffusion sees a model: a callable from (x_t, timesteps) to the network output.
// Conditioning (class labels, low-resolution images) is captured by the callable, e.g.
//   ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t) {
//     return unet->forward_kwargs(x, t, kwargs);
//   };
// so that diffusion/ needs nothing from model/.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace idiff {

// x: [N, C, ...] at step t; t: [N], the timesteps as the network sees them (mapped to the
// original process and, with rescale_timesteps, float32 scaled to 0..1000). Returns
// [N, C, ...], or [N, 2C, ...] when the variance is learned.
using ModelFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t)>;

// Applied to every x_0 prediction before clipping (the reference's denoised_fn).
using DenoisedFn = std::function<at::Tensor(const at::Tensor& x_start)>;

// Classifier guidance (guided-diffusion's cond_fn): the gradient with respect to x of the
// scaled log-probability of the wanted classes, at the network's timesteps t (mapped as a
// ModelFn's are). Returns [N, C, ...] like x. Ancestral steps add variance x gradient to
// the mean (condition_mean); deterministic ones move epsilon by -sigma x gradient
// (condition_score).
using CondFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t)>;

}  // namespace idiff
