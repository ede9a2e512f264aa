#include "idiff/diffusion/resample.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/gaussian_diffusion.h"

#include <ATen/ATen.h>

#include <cmath>
#include <numeric>

namespace idiff {

std::vector<double> ScheduleSampler::probabilities() const {
  std::vector<double> p = weights();
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  TORCH_CHECK(total > 0.0 && std::isfinite(total), "schedule sampler weights sum to ", total);
  for (double& v : p) v /= total;
  return p;
}

std::pair<at::Tensor, at::Tensor> ScheduleSampler::sample(
    int64_t batch_size, const c10::Device& device,
    const std::optional<at::Generator>& generator) const {
  IDIFF_REQUIRE(batch_size >= 1, ConfigError, "the batch size must be at least 1, got ",
                batch_size);
  const std::vector<double> p = probabilities();
  const int64_t n = static_cast<int64_t>(p.size());
  const at::Tensor probs = at::tensor(p, at::kDouble);
  const at::Tensor indices = at::multinomial(probs, batch_size, /*replacement=*/true, generator);
  // 1 / (T p_t), in float64 before the cast like the reference.
  const at::Tensor weights = (1.0 / (static_cast<double>(n) * probs.index_select(0, indices)));
  return {indices.to(device), weights.to(at::kFloat).to(device)};
}

UniformSampler::UniformSampler(const GaussianDiffusion& diffusion)
    : weights_(static_cast<size_t>(diffusion.num_timesteps()), 1.0) {}

void LossAwareSampler::update_with_all_losses(const at::Tensor& ts, const at::Tensor& losses) {
  TORCH_CHECK(ts.dim() == 1 && losses.dim() == 1 && ts.size(0) == losses.size(0),
              "update_with_all_losses: expected [M] timesteps and [M] losses, got ", ts.sizes(),
              " and ", losses.sizes());
  const at::Tensor t64 = ts.detach().to(at::kCPU, at::kLong).contiguous();
  const at::Tensor l64 = losses.detach().to(at::kCPU, at::kDouble).contiguous();
  update_with_all_losses(
      std::vector<int64_t>(t64.data_ptr<int64_t>(), t64.data_ptr<int64_t>() + t64.numel()),
      std::vector<double>(l64.data_ptr<double>(), l64.data_ptr<double>() + l64.numel()));
}

LossSecondMomentResampler::LossSecondMomentResampler(const GaussianDiffusion& diffusion,
                                                     int64_t history_per_term, double uniform_prob)
    : num_timesteps_(diffusion.num_timesteps()),
      history_per_term_(history_per_term),
      uniform_prob_(uniform_prob),
      loss_history_(static_cast<size_t>(num_timesteps_ * history_per_term), 0.0),
      loss_counts_(static_cast<size_t>(num_timesteps_), 0) {
  TORCH_CHECK(history_per_term >= 1, "history_per_term must be at least 1");
  TORCH_CHECK(uniform_prob >= 0.0 && uniform_prob <= 1.0, "uniform_prob must be in [0, 1]");
}

bool LossSecondMomentResampler::warmed_up() const {
  for (int64_t c : loss_counts_) {
    if (c != history_per_term_) return false;
  }
  return true;
}

std::vector<double> LossSecondMomentResampler::weights() const {
  std::vector<double> w(static_cast<size_t>(num_timesteps_), 1.0);
  if (!warmed_up()) return w;
  double total = 0.0;
  for (int64_t t = 0; t < num_timesteps_; ++t) {
    double sq = 0.0;
    for (int64_t k = 0; k < history_per_term_; ++k) {
      const double l = loss_history_[t * history_per_term_ + k];
      sq += l * l;
    }
    w[t] = std::sqrt(sq / static_cast<double>(history_per_term_));
    total += w[t];
  }
  for (double& v : w) {
    v = v / total * (1.0 - uniform_prob_) + uniform_prob_ / static_cast<double>(num_timesteps_);
  }
  return w;
}

void LossSecondMomentResampler::update_with_all_losses(const std::vector<int64_t>& ts,
                                                       const std::vector<double>& losses) {
  TORCH_CHECK(ts.size() == losses.size(), "update_with_all_losses: ", ts.size(), " timesteps but ",
              losses.size(), " losses");
  for (size_t i = 0; i < ts.size(); ++i) {
    const int64_t t = ts[i];
    TORCH_CHECK(t >= 0 && t < num_timesteps_, "update_with_all_losses: timestep ", t,
                " is outside [0, ", num_timesteps_, ")");
    double* row = &loss_history_[t * history_per_term_];
    int64_t& count = loss_counts_[t];
    if (count == history_per_term_) {
      // Shift out the oldest loss.
      std::copy(row + 1, row + history_per_term_, row);
      row[history_per_term_ - 1] = losses[i];
    } else {
      row[count++] = losses[i];
    }
  }
}

std::unique_ptr<ScheduleSampler> create_named_schedule_sampler(const std::string& name,
                                                               const GaussianDiffusion& diffusion) {
  if (name == "uniform") return std::make_unique<UniformSampler>(diffusion);
  if (name == "loss-second-moment") return std::make_unique<LossSecondMomentResampler>(diffusion);
  throw ConfigError(str("`schedule_sampler` '", name,
                        "' is not a known schedule sampler (expected one of: uniform, "
                        "loss-second-moment)"));
}

}  // namespace idiff
