#include "idiff/diffusion/sampling/noise_levels.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace idiff {

NoiseSchedule::NoiseSchedule(std::vector<double> alphas_cumprod, bool rescale_timesteps)
    : rescale_timesteps_(rescale_timesteps) {
  IDIFF_REQUIRE(alphas_cumprod.size() >= 2, ConfigError,
                "sampling needs a diffusion of at least 2 steps, got ", alphas_cumprod.size());
  lambdas_.reserve(alphas_cumprod.size());
  for (double ab : alphas_cumprod) {
    IDIFF_REQUIRE(ab > 0.0 && ab < 1.0, ConfigError, "alpha_bar must lie in (0, 1), got ", ab);
    lambdas_.push_back(0.5 * (std::log(ab) - std::log1p(-ab)));
  }
}

NoiseSchedule::NoiseSchedule(std::vector<double> lambdas, bool rescale_timesteps, bool karras)
    : lambdas_(std::move(lambdas)), rescale_timesteps_(rescale_timesteps), karras_(karras) {}

NoiseSchedule NoiseSchedule::karras(double sigma_min, double sigma_max, int64_t num_timesteps) {
  IDIFF_REQUIRE(sigma_min > 0 && sigma_max > sigma_min && num_timesteps >= 2, ConfigError,
                "`sigma_min` (", sigma_min, ") must be positive and below `sigma_max` (", sigma_max,
                ")");
  std::vector<double> lambdas;
  const double lo = std::log(sigma_min), hi = std::log(sigma_max);
  for (int64_t i = 0; i < num_timesteps; ++i) {
    const double w = static_cast<double>(i) / static_cast<double>(num_timesteps - 1);
    lambdas.push_back(-(lo + w * (hi - lo)));  // lambda = log(alpha / sigma) = -log sigma_k
  }
  return NoiseSchedule(std::move(lambdas), false, true);
}

double NoiseSchedule::model_time(double t, double lambda) const {
  if (karras_) return -250.0 * lambda;
  return rescale_timesteps_ ? t * 1000.0 / static_cast<double>(num_timesteps()) : t;
}

double NoiseSchedule::lambda(double t) const {
  const double last = static_cast<double>(num_timesteps() - 1);
  IDIFF_REQUIRE(t >= 0.0 && t <= last, ConfigError, "timestep ", t, " is outside [0, ", last, "]");
  const auto i = std::min<int64_t>(static_cast<int64_t>(std::floor(t)), num_timesteps() - 2);
  const double w = t - static_cast<double>(i);
  return (1.0 - w) * lambdas_[i] + w * lambdas_[i + 1];
}

double NoiseSchedule::t_of_lambda(double lam) const {
  if (lam >= lambdas_.front()) return 0.0;
  if (lam <= lambdas_.back()) return static_cast<double>(num_timesteps() - 1);
  // lambdas_ decreases: the first index whose lambda is below lam.
  const auto it = std::upper_bound(lambdas_.begin(), lambdas_.end(), lam, std::greater<double>());
  const int64_t hi = it - lambdas_.begin(), lo = hi - 1;
  const double w = (lambdas_[lo] - lam) / (lambdas_[lo] - lambdas_[hi]);
  return static_cast<double>(lo) + w;
}

NoiseLevel NoiseSchedule::level(double t) const {
  NoiseLevel l;
  if (t == kCleanLevel) {
    l.t = l.t_model = kCleanLevel;
    return l;
  }
  l.t = t;
  l.lambda = lambda(t);
  l.t_model = model_time(t, l.lambda);
  // alpha^2 = sigmoid(2 lambda), sigma^2 = sigmoid(-2 lambda).
  l.alpha = std::sqrt(1.0 / (1.0 + std::exp(-2.0 * l.lambda)));
  l.sigma = std::sqrt(1.0 / (1.0 + std::exp(2.0 * l.lambda)));
  return l;
}

NoiseLevel NoiseSchedule::level_of_sigma_k(double sigma_k) const {
  IDIFF_REQUIRE(sigma_k > 0 && std::isfinite(sigma_k), ConfigError,
                "a noise level sigma must be a positive number, got ", sigma_k);
  NoiseLevel l = level(t_of_lambda(-std::log(sigma_k)));
  l.lambda = -std::log(sigma_k);
  if (karras_) l.t_model = model_time(l.t, l.lambda);
  l.alpha = 1.0 / std::sqrt(1.0 + sigma_k * sigma_k);
  l.sigma = sigma_k * l.alpha;
  return l;
}

}  // namespace idiff
