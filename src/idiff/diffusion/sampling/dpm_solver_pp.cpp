// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models"): the multistep solvers in data prediction, 2M (Alg. 2, with the
// midpoint form diffusers uses), 3M, and the 2M SDE solver (sec. 5 / appendix), as
// LinearPlans. With h = lambda_s - lambda_t, phi = 1 - e^{-h}:
//   1st order   x_s = (sigma_s / sigma_t) x + alpha_s phi D0
//   2M          ... + alpha_s phi / 2 D1,                 D1 = (m0 - m1) / r0
//   3M          x_s = (sigma_s / sigma_t) x + alpha_s phi D0 + alpha_s (1 - phi / h) D1
//                     - alpha_s ((h - phi) / h^2 - 1/2) D2   (D1, D2 from m0, m1, m2)
//   2M SDE      x_s = (sigma_s / sigma_t) e^{-h} x + alpha_s phi2 (D0 + D1 / 2)
//                     + sigma_s sqrt(phi2) z,              phi2 = 1 - e^{-2h}
// where r_k are the previous log-SNR steps over h.
#include "idiff/diffusion/sampling/linear_multistep.h"

#include "idiff/common/error.h"

#include <cmath>

namespace idiff {

LinearPlan dpm_solver_pp_plan(const std::vector<NoiseLevel>& levels, int64_t order, bool sde,
                              bool lower_order_final) {
  IDIFF_REQUIRE(order >= 1 && order <= 3 && !(sde && order > 2), ConfigError,
                "DPM-Solver++ is 2M, 3M or 2M SDE, got order ", order);
  LinearPlan plan;
  plan.history = order;
  plan.noise = sde;
  const int64_t n = static_cast<int64_t>(levels.size()) - 1;
  const bool clean = levels.back().clean();
  for (int64_t i = 0; i < n; ++i) {
    const NoiseLevel &t = levels[i], &s = levels[i + 1];
    const int64_t p = multistep_order(order, i, n, lower_order_final, clean && i == n - 1);
    LinearStep st;
    st.h.assign(static_cast<size_t>(order), 0.0);
    if (s.clean()) {  // h = inf: x_s = x_0
      st.h[0] = 1.0;
      plan.steps.push_back(st);
      continue;
    }
    const double h = s.lambda - t.lambda;
    const double phi = sde ? -std::expm1(-2.0 * h) : -std::expm1(-h);
    st.x = sde ? (s.sigma / t.sigma) * std::exp(-h) : s.sigma / t.sigma;
    if (sde) st.noise = s.sigma * std::sqrt(phi);
    st.h[0] = s.alpha * phi;
    if (p >= 2) {
      const double r0 = (t.lambda - levels[i - 1].lambda) / h;
      if (p == 2) {
        // + alpha_s phi / 2 (m0 - m1) / r0
        st.h[0] += 0.5 * s.alpha * phi / r0;
        st.h[1] -= 0.5 * s.alpha * phi / r0;
      } else {
        const double r1 = (levels[i - 1].lambda - levels[i - 2].lambda) / h;
        // D1_0 = (m0 - m1) / r0, D1_1 = (m1 - m2) / r1, diff = D1_0 - D1_1,
        // D1 = D1_0 + r0 / (r0 + r1) diff, D2 = diff / (r0 + r1); as vectors over (m0, m1, m2).
        const double d10[3] = {1 / r0, -1 / r0, 0}, diff[3] = {1 / r0, -1 / r0 - 1 / r1, 1 / r1};
        const double a = s.alpha * (1.0 - phi / h);
        const double b = -s.alpha * ((h - phi) / (h * h) - 0.5);
        for (int k = 0; k < 3; ++k) {
          const double d1 = d10[k] + r0 / (r0 + r1) * diff[k], d2 = diff[k] / (r0 + r1);
          st.h[k] += a * d1 + b * d2;
        }
      }
    }
    plan.steps.push_back(st);
  }
  return plan;
}

}  // namespace idiff
