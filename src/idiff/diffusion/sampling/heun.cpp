// Heun's method on the probability-flow ODE in Karras et al.'s variance-exploding form
// (Karras et al. 2022, "EDM", Alg. 2; k-diffusion's and consistency_models' sample_heun):
// with x_ve = x / alpha and k = sigma / alpha, optionally churned up to k_hat first
// (linear_multistep.h, Churn),
//   d  = (x_ve - D(x, k_hat)) / k_hat,  x2 = x_ve + (k_s - k_hat) d        (an Euler step)
//   d2 = (x2 - D(x2, k_s)) / k_s,        x_ve' = x_ve + (k_s - k_hat) (d + d2) / 2
// two model calls a step, except into sigma 0, which is the Euler step alone.
#include "idiff/diffusion/sampling/solver.h"

#include "idiff/diffusion/sampling/linear_multistep.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace idiff {

Churn churn_at(const NoiseSchedule& ns, const NoiseLevel& level, int64_t num_steps,
               const SolverOptions& o) {
  const double k = level.sigma_k();
  Churn c{level, 0.0};
  if (o.s_churn <= 0 || k < o.s_tmin || k > o.s_tmax) return c;
  const double gamma = std::min(o.s_churn / static_cast<double>(num_steps), std::sqrt(2.0) - 1.0);
  const double k_hat = k * (gamma + 1.0);
  c.hat = ns.level_of_sigma_k(k_hat);
  c.noise = o.s_noise * std::sqrt(k_hat * k_hat - k * k);
  return c;
}

bool any_churn(const std::vector<Churn>& churn) {
  return std::any_of(churn.begin(), churn.end(), [](const Churn& c) { return c.noise > 0; });
}

namespace {

// Row: [t_model, alpha, sigma of the level the model is called at (k_hat); the same of level
// i + 1; k_hat, k_s - k_hat; alpha of level i; the churn's noise scale].
// Variants: bit 0, a second call (not into sigma 0); bit 1, churn.
class HeunSolver : public Solver {
 public:
  HeunSolver(const StepSchedule& schedule, std::vector<NoiseLevel> levels, Denoiser denoiser,
             const NoiseSchedule& ns, const SolverOptions& o)
      : Solver(schedule), levels_(std::move(levels)), denoiser_(std::move(denoiser)) {
    for (int64_t i = 0; i < num_steps(); ++i)
      churn_.push_back(churn_at(ns, levels_[i], num_steps(), o));
  }

  std::string name() const override { return "heun"; }
  int64_t variant(int64_t i) const override {
    return (levels_[i + 1].clean() ? 0 : 1) + (churn_[i].noise > 0 ? 2 : 0);
  }
  int64_t model_calls(int64_t i) const override { return (variant(i) & 1) ? 2 : 1; }
  bool draws_noise() const override { return any_churn(churn_); }

  at::Tensor coefficients() const override {
    at::Tensor table = at::zeros({num_steps(), 10}, at::kDouble);
    auto a = table.accessor<double, 2>();
    for (int64_t i = 0; i < num_steps(); ++i) {
      const NoiseLevel &t = churn_[i].hat, &s = levels_[i + 1];
      const double row[10] = {
          t.t_model,        t.alpha,        t.sigma,     s.t_model,
          s.alpha,          s.sigma,        t.sigma_k(), s.sigma_k() - t.sigma_k(),
          levels_[i].alpha, churn_[i].noise};
      for (int k = 0; k < 10; ++k) a[i][k] = row[k];
    }
    return table;
  }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                    int64_t variant) override {
    at::Tensor xv, m;
    if (variant & 2) {  // churn: x_ve + noise, then the model at k_hat
      xv = x / row[8] + noise * row[9];
      m = denoiser_(xv * row[1], row[0], row[1], row[2]);
    } else {
      m = denoiser_(x, row[0], row[1], row[2]);
      xv = x / row[1];
    }
    const at::Tensor d = (xv - m) / row[6];
    const at::Tensor x2 = xv + d * row[7];
    if (!(variant & 1)) return {x2 * row[4], m};
    const at::Tensor m2 = denoiser_(x2 * row[4], row[3], row[4], row[5]);
    const at::Tensor d2 = (x2 - m2) / (row[6] + row[7]);
    return {(xv + (d + d2) * (row[7] * 0.5)) * row[4], m};
  }

 private:
  std::vector<NoiseLevel> levels_;
  std::vector<Churn> churn_;
  Denoiser denoiser_;
};

}  // namespace

std::unique_ptr<Solver> make_heun_solver(const StepSchedule& schedule,
                                         const std::vector<NoiseLevel>& levels, Denoiser denoiser,
                                         const NoiseSchedule& ns, const SolverOptions& options) {
  return std::make_unique<HeunSolver>(schedule, levels, std::move(denoiser), ns, options);
}

}  // namespace idiff
