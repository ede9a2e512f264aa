// The noise levels a sampler steps through, in continuous time (Lu et al. 2022,
// "DPM-Solver", sec. 3 and appendix: the discrete-time VP schedule made continuous).
//
// A diffusion of T steps gives alpha_bar_t at t = 0 .. T-1. Between integer steps the
// log-SNR lambda_t = log(alpha_t / sigma_t), alpha_t = sqrt(alpha_bar_t),
// sigma_t = sqrt(1 - alpha_bar_t), is interpolated linearly in t, so fractional timesteps
// have a noise level too and t(lambda) is its exact inverse (the interpolation diffusers'
// schedulers use for Karras sigmas, linear in log sigma_k = -lambda). The model sees t (or
// t * 1000 / T with rescale_timesteps).
//
// The Karras denoisers of consistency_models (karras_diffusion.h) live on variance-exploding
// levels sigma_k in [sigma_min, sigma_max]: NoiseSchedule::karras spaces T points uniformly
// in log sigma_k (so lambda is exactly linear in t and the interpolation exact), and the
// network sees 250 log sigma_k.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace idiff {

// A point of the reverse process: the time the model is called at and its noise level.
// The clean end (alpha = 1, sigma = 0, lambda = +inf) has t = kCleanLevel.
struct NoiseLevel {
  double t = 0.0;        // timestep of the original process (kCleanLevel at the clean end)
  double t_model = 0.0;  // what the network is given
  double alpha = 1.0;    // sqrt(alpha_bar_t)
  double sigma = 0.0;    // sqrt(1 - alpha_bar_t)
  double lambda = std::numeric_limits<double>::infinity();  // log(alpha / sigma)
  bool clean() const { return sigma == 0.0; }
  // The variance-exploding noise level sigma / alpha of Karras et al. 2022 (k-diffusion).
  double sigma_k() const { return sigma / alpha; }
};

constexpr double kCleanLevel = -1.0;

class NoiseSchedule {
 public:
  // alphas_cumprod of the full process (T values, decreasing, in (0, 1)).
  NoiseSchedule(std::vector<double> alphas_cumprod, bool rescale_timesteps);
  // The levels of a Karras denoiser: sigma_k from sigma_min (t = 0) to sigma_max (t = T-1),
  // uniform in log sigma_k; the model time is 250 log sigma_k.
  static NoiseSchedule karras(double sigma_min, double sigma_max, int64_t num_timesteps = 1000);

  int64_t num_timesteps() const { return static_cast<int64_t>(lambdas_.size()); }
  // lambda at a (fractional) timestep in [0, T-1].
  double lambda(double t) const;
  // The timestep whose lambda is `lam`, clamped to [0, T-1].
  double t_of_lambda(double lam) const;
  // The level at t in [0, T-1], or the clean end for kCleanLevel.
  NoiseLevel level(double t) const;
  // The level of noise sigma_k = sigma / alpha > 0, exact even outside the schedule's range
  // (the stochastic churn and midpoints of Karras' samplers); t and the model time are
  // those of the nearest level inside it.
  NoiseLevel level_of_sigma_k(double sigma_k) const;
  bool is_karras() const { return karras_; }

 private:
  NoiseSchedule(std::vector<double> lambdas, bool rescale_timesteps, bool karras);
  double model_time(double t, double lambda) const;

  std::vector<double> lambdas_;  // lambda at t = 0 .. T-1, decreasing
  bool rescale_timesteps_ = false;
  bool karras_ = false;  // the model time is 250 log sigma_k = -250 lambda
};

}  // namespace idiff
