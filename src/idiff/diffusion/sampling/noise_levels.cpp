#include "idiff/diffusion/sampling/noise_levels.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cmath>

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
  l.t_model = rescale_timesteps_ ? t * 1000.0 / static_cast<double>(num_timesteps()) : t;
  l.lambda = lambda(t);
  // alpha^2 = sigmoid(2 lambda), sigma^2 = sigmoid(-2 lambda).
  l.alpha = std::sqrt(1.0 / (1.0 + std::exp(-2.0 * l.lambda)));
  l.sigma = std::sqrt(1.0 / (1.0 + std::exp(2.0 * l.lambda)));
  return l;
}

}  // namespace idiff
