// The Karras denoiser of openai/consistency_models (cm/karras_diffusion.py, KarrasDenoiser;
// Karras et al. 2022 "EDM", sec. 5 and table 1; Song et al. 2023 "Consistency Models",
// appendix C): a network F turned into a denoiser of variance-exploding noise levels sigma,
//   D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, 250 log sigma),
// with EDM's scalings, or the boundary-condition ones of consistency models, for which
// D(x, sigma_min) = x exactly. Training draws sigma (lognormal for EDM) and minimises the
// weighted squared error of D (training_losses).
//
// The sampling engine runs these models as any other: their noise levels form a continuous
// schedule (NoiseSchedule::karras) and the engine's Denoiser applies the scalings
// (DenoiserOptions::karras), so every sampler of the registry works on them.
#pragma once

#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/model_fn.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace idiff {

struct KarrasParams {
  double sigma_data = 0.5;
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double rho = 7.0;
  std::string weight_schedule = "karras";  // karras, snr, snr+1, truncated-snr, uniform
  // Consistency models (consistency_distillation, consistency_training): the scalings of the
  // boundary condition; EDM: false.
  bool distillation = false;
};

// "karras, snr, snr+1, truncated-snr, uniform".
const char* weight_schedule_names();

// Throws ConfigError naming the flag unless 0 < sigma_min < sigma_max, sigma_data > 0,
// rho > 0 and the weight schedule is known.
void check_karras_params(const KarrasParams& p);

struct KarrasScalings {
  at::Tensor c_skip, c_out, c_in;  // each shaped like sigma
};

// The outputs of KarrasDenoiser::denoise.
struct KarrasDenoised {
  at::Tensor model_output;  // F(c_in x, 250 log sigma)
  at::Tensor denoised;      // c_out F + c_skip x
};

class KarrasDenoiser {
 public:
  explicit KarrasDenoiser(KarrasParams params);

  const KarrasParams& params() const { return params_; }

  // EDM (get_scalings) or, with distillation, the boundary condition
  // (get_scalings_for_boundary_condition). sigma: any shape.
  KarrasScalings scalings(const at::Tensor& sigma) const;
  // The network's time input, 1000 * 0.25 * log(sigma + 1e-44).
  static at::Tensor model_time(const at::Tensor& sigma);
  // x_t: [N, C, ...]; sigmas: [N] (one level per sample).
  KarrasDenoised denoise(const ModelFn& model, const at::Tensor& x_t,
                         const at::Tensor& sigmas) const;
  // get_weightings of the weight schedule at sigmas (snr = sigma^-2).
  at::Tensor weightings(const at::Tensor& sigmas) const;
  // EDM training (training_losses): x_t = x_start + noise sigma; the terms "xs_mse"
  // (mean over C, H, W of (D - x_start)^2), "mse" (the same weighted) and "loss" (= mse),
  // each [N].
  LossTerms training_losses(const ModelFn& model, const at::Tensor& x_start,
                            const at::Tensor& sigmas, const at::Tensor& noise) const;

 private:
  KarrasParams params_;
};

// get_sigmas_karras: n levels from sigma_max down to sigma_min, uniform in sigma^(1/rho)
// (Karras et al. eq. 5), then 0 appended (n + 1 values).
std::vector<double> karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho);

}  // namespace idiff
