// Heun's method on the probability-flow ODE in Karras et al.'s variance-exploding form
// (Karras et al. 2022, "EDM", Alg. 1 without stochastic churn; k-diffusion's sample_heun):
// with x_ve = x / alpha and k = sigma / alpha,
//   d  = (x_ve - D(x, k_t)) / k_t,  x2 = x_ve + (k_s - k_t) d           (an Euler step)
//   d2 = (x2 - D(x2, k_s)) / k_s,    x_ve' = x_ve + (k_s - k_t) (d + d2) / 2
// two model calls a step, except into sigma 0, which is the Euler step alone.
#include "idiff/diffusion/sampling/solver.h"

#include "idiff/diffusion/sampling/linear_multistep.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

// Row: [t_model, alpha, sigma of level i; the same of level i + 1; k_t, k_s - k_t].
class HeunSolver : public Solver {
 public:
  HeunSolver(const StepSchedule& schedule, std::vector<NoiseLevel> levels, Denoiser denoiser)
      : Solver(schedule), levels_(std::move(levels)), denoiser_(std::move(denoiser)) {}

  std::string name() const override { return "heun"; }
  int64_t variant(int64_t i) const override { return levels_[i + 1].clean() ? 0 : 1; }
  int64_t model_calls(int64_t i) const override { return variant(i) == 1 ? 2 : 1; }

  at::Tensor coefficients() const override {
    at::Tensor table = at::zeros({num_steps(), 8}, at::kDouble);
    auto a = table.accessor<double, 2>();
    for (int64_t i = 0; i < num_steps(); ++i) {
      const NoiseLevel &t = levels_[i], &s = levels_[i + 1];
      const double row[8] = {t.t_model, t.alpha, t.sigma,     s.t_model,
                             s.alpha,   s.sigma, t.sigma_k(), s.sigma_k() - t.sigma_k()};
      for (int k = 0; k < 8; ++k) a[i][k] = row[k];
    }
    return table;
  }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor&,
                    int64_t variant) override {
    const at::Tensor m = denoiser_(x, row[0], row[1], row[2]);
    const at::Tensor xv = x / row[1];
    const at::Tensor d = (xv - m) / row[6];
    const at::Tensor x2 = xv + d * row[7];
    if (variant == 0) return {x2 * row[4], m};
    const at::Tensor m2 = denoiser_(x2 * row[4], row[3], row[4], row[5]);
    const at::Tensor d2 = (x2 - m2) / (row[6] + row[7]);
    return {(xv + (d + d2) * (row[7] * 0.5)) * row[4], m};
  }

 private:
  std::vector<NoiseLevel> levels_;
  Denoiser denoiser_;
};

}  // namespace

std::unique_ptr<Solver> make_heun_solver(const StepSchedule& schedule,
                                         const std::vector<NoiseLevel>& levels, Denoiser denoiser) {
  return std::make_unique<HeunSolver>(schedule, levels, std::move(denoiser));
}

}  // namespace idiff
