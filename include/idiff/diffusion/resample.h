// Timestep samplers for training (reference: improved_diffusion/resample.py; Nichol &
// Dhariwal 2021 sec. 3.3, importance sampling of L_vlb, eq. 18). A sampler draws t with
// probability p_t and weights each loss by 1 / (T p_t), so the weighted loss stays an
// unbiased estimate of the uniform average.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace idiff {

class GaussianDiffusion;

class ScheduleSampler {
 public:
  virtual ~ScheduleSampler() = default;

  // One positive, unnormalised weight per diffusion step.
  virtual std::vector<double> weights() const = 0;
  // weights() normalised to sum to 1.
  std::vector<double> probabilities() const;

  // Draws batch_size timesteps t ~ p (int64 [N]) and their loss weights 1 / (T p_t)
  // (float32 [N]), both on `device`. The draw uses `generator` (a CPU generator; none: the
  // global CPU generator).
  std::pair<at::Tensor, at::Tensor> sample(
      int64_t batch_size, const c10::Device& device,
      const std::optional<at::Generator>& generator = std::nullopt) const;
};

// p_t = 1 / T.
class UniformSampler : public ScheduleSampler {
 public:
  explicit UniformSampler(const GaussianDiffusion& diffusion);
  std::vector<double> weights() const override { return weights_; }

 private:
  std::vector<double> weights_;
};

// A sampler that learns from the losses it sees. The training layer gathers the timesteps
// and losses of every rank (the reference's update_with_local_losses) and passes them all to
// update_with_all_losses on every rank, in the same order, so every rank keeps the same state.
class LossAwareSampler : public ScheduleSampler {
 public:
  virtual void update_with_all_losses(const std::vector<int64_t>& ts,
                                      const std::vector<double>& losses) = 0;
  // The same from tensors ([M] integer timesteps, [M] losses) on any device.
  void update_with_all_losses(const at::Tensor& ts, const at::Tensor& losses);
};

// p_t proportional to sqrt(E[L_t^2]) over the last history_per_term losses of each step,
// mixed with uniform_prob of the uniform distribution; uniform until every step has its full
// history (Nichol & Dhariwal sec. 3.3).
class LossSecondMomentResampler : public LossAwareSampler {
 public:
  explicit LossSecondMomentResampler(const GaussianDiffusion& diffusion,
                                     int64_t history_per_term = 10, double uniform_prob = 0.001);

  std::vector<double> weights() const override;
  using LossAwareSampler::update_with_all_losses;
  void update_with_all_losses(const std::vector<int64_t>& ts,
                              const std::vector<double>& losses) override;
  // Every step has history_per_term losses.
  bool warmed_up() const;

 private:
  int64_t num_timesteps_;
  int64_t history_per_term_;
  double uniform_prob_;
  std::vector<double> loss_history_;  // [T, history_per_term], oldest first
  std::vector<int64_t> loss_counts_;  // [T]
};

// "uniform" or "loss-second-moment"; a ConfigError naming --schedule_sampler otherwise.
std::unique_ptr<ScheduleSampler> create_named_schedule_sampler(const std::string& name,
                                                               const GaussianDiffusion& diffusion);

}  // namespace idiff
