// consistency_models' sample_dpm (cm/karras_diffusion.py: "a sampler inspired by DPM-Solver-2
// and Algorithm 2 from Karras et al. (2022)"): the churn of Alg. 2 (linear_multistep.h),
// then a midpoint step whose midpoint lies on a rho = 3 Karras spacing,
//   k_mid = ((k_hat^(1/3) + k_s^(1/3)) / 2)^3
//   d  = (x_ve - D(x, k_hat)) / k_hat,  x2 = x_ve + (k_mid - k_hat) d
//   d2 = (x2 - D(x2, k_mid)) / k_mid,    x_ve' = x_ve + (k_s - k_hat) d2
// two model calls at every step, the last one (into sigma 0, k_mid = k_hat / 8) too.
#include "idiff/diffusion/sampling/solver.h"

#include "idiff/diffusion/sampling/linear_multistep.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace idiff {
namespace {

constexpr int kCols = 13;

// Row: [t_model, alpha, sigma at k_hat; the same at k_mid; k_hat, k_mid - k_hat, k_s - k_hat,
// k_mid; alpha of level i; the churn's noise scale; alpha of level i + 1].
class KarrasDpmSolver : public Solver {
 public:
  KarrasDpmSolver(const StepSchedule& schedule, std::vector<NoiseLevel> levels, Denoiser denoiser,
                  const NoiseSchedule& ns, const SolverOptions& o)
      : Solver(schedule), levels_(std::move(levels)), denoiser_(std::move(denoiser)) {
    for (int64_t i = 0; i < num_steps(); ++i) {
      const Churn c = churn_at(ns, levels_[i], num_steps(), o);
      const double k_hat = c.hat.sigma_k(), k_s = levels_[i + 1].sigma_k();
      const double mid = std::pow((std::cbrt(k_hat) + std::cbrt(k_s)) / 2.0, 3.0);
      churn_.push_back(c);
      mids_.push_back(ns.level_of_sigma_k(mid));
    }
  }

  std::string name() const override { return "dpm"; }
  int64_t variant(int64_t i) const override { return churn_[i].noise > 0 ? 1 : 0; }
  int64_t model_calls(int64_t) const override { return 2; }
  bool draws_noise() const override { return any_churn(churn_); }

  at::Tensor coefficients() const override {
    at::Tensor table = at::zeros({num_steps(), kCols}, at::kDouble);
    auto a = table.accessor<double, 2>();
    for (int64_t i = 0; i < num_steps(); ++i) {
      const NoiseLevel &h = churn_[i].hat, &m = mids_[i], &s = levels_[i + 1];
      const double row[kCols] = {h.t_model,
                                 h.alpha,
                                 h.sigma,
                                 m.t_model,
                                 m.alpha,
                                 m.sigma,
                                 h.sigma_k(),
                                 m.sigma_k() - h.sigma_k(),
                                 s.sigma_k() - h.sigma_k(),
                                 m.sigma_k(),
                                 levels_[i].alpha,
                                 churn_[i].noise,
                                 s.alpha};
      for (int k = 0; k < kCols; ++k) a[i][k] = row[k];
    }
    return table;
  }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                    int64_t variant) override {
    at::Tensor xv = x / row[10];
    if (variant == 1) xv = xv + noise * row[11];
    const at::Tensor m = denoiser_(xv * row[1], row[0], row[1], row[2]);
    const at::Tensor d = (xv - m) / row[6];
    const at::Tensor x2 = xv + d * row[7];
    const at::Tensor m2 = denoiser_(x2 * row[4], row[3], row[4], row[5]);
    const at::Tensor d2 = (x2 - m2) / row[9];
    return {(xv + d2 * row[8]) * row[12], m};
  }

 private:
  std::vector<NoiseLevel> levels_;
  std::vector<Churn> churn_;
  std::vector<NoiseLevel> mids_;
  Denoiser denoiser_;
};

}  // namespace

std::unique_ptr<Solver> make_karras_dpm_solver(const StepSchedule& schedule,
                                               const std::vector<NoiseLevel>& levels,
                                               Denoiser denoiser, const NoiseSchedule& ns,
                                               const SolverOptions& options) {
  return std::make_unique<KarrasDpmSolver>(schedule, levels, std::move(denoiser), ns, options);
}

}  // namespace idiff
