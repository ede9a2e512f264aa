// The denoiser every solver of the sampling engine calls: any improved-diffusion model
// (epsilon or x_0 prediction, fixed or learned variance) turned into an x_0 prediction at
// a noise level, with the reference's clipping or dynamic thresholding applied.
//
// The noise level comes as 0-d tensors on the sample's device (model time, alpha, sigma),
// not host numbers, so one step's code runs eagerly and under a captured CUDA graph alike.
#pragma once

#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/model_fn.h"

#include <ATen/core/Tensor.h>

#include <optional>

namespace idiff {

enum class Threshold {
  None,     // the x_0 prediction as it is (the ODE solvers' accuracy measurements)
  Clip,     // clamp to [-1, 1] (the reference's clip_denoised)
  Dynamic,  // Saharia et al. 2022 (Imagen) sec. 2.3: per sample, s = max(1, the p-quantile
            // of |x_0|), then clamp to [-s, s] and divide by s
};

struct DenoiserOptions {
  bool predict_xstart = false;    // the model's first C channels are x_0, else epsilon
  bool learned_variance = false;  // the model returns 2C channels; the last C are ignored
  Threshold threshold = Threshold::Clip;
  double dynamic_threshold_p = 0.995;
  DenoisedFn denoised_fn;  // optional, applied before thresholding (the reference's)
  // Optional classifier guidance, applied after thresholding as guided-diffusion's
  // condition_score: epsilon - sigma g, i.e. x_0 + sigma^2 / alpha g (unclipped).
  CondFn cond_fn;
  // Optional, applied after thresholding: zero-shot editing's replacement of the known part
  // of the image (karras_edit.h).
  DenoisedFn replace_fn;
  // Set: the model is a Karras denoiser's network (consistency_models), called on
  // x / alpha at sigma_k = sigma / alpha with these scalings; predict_xstart and
  // learned_variance do not apply.
  std::optional<KarrasParams> karras;
};

class Denoiser {
 public:
  Denoiser(ModelFn model, DenoiserOptions options);

  // x_0 from x at the level (t_model, alpha, sigma): one model call on t_model expanded to
  // the batch.
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& t_model, const at::Tensor& alpha,
                        const at::Tensor& sigma) const;

  const DenoiserOptions& options() const { return options_; }

 private:
  at::Tensor threshold(const at::Tensor& x0) const;

  ModelFn model_;
  DenoiserOptions options_;
  std::optional<KarrasDenoiser> karras_;
};

}  // namespace idiff
