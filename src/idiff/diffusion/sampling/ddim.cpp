// DDIM (Song et al. 2021, eq. 12 with sigma_t of eq. 16 scaled by eta) and Euler ancestral
// (Karras et al. 2022; k-diffusion's sample_euler_ancestral) as LinearPlans on the
// continuous schedule, for any (fractional) levels. Euler on the variance-exploding ODE,
// x_ve = x / alpha, is DDIM with eta = 0: the same coefficients.
#include "idiff/diffusion/sampling/linear_multistep.h"

#include <algorithm>
#include <cmath>

namespace idiff {

LinearPlan ddim_plan(const std::vector<NoiseLevel>& levels, double eta) {
  LinearPlan plan;
  plan.history = 1;
  plan.noise = eta > 0.0;
  for (size_t i = 0; i + 1 < levels.size(); ++i) {
    const NoiseLevel &t = levels[i], &s = levels[i + 1];
    // eq. 16: c = eta sqrt((1 - a_s) / (1 - a_t)) sqrt(1 - a_t / a_s), a = alpha_bar.
    const double c = eta * (s.sigma / t.sigma) *
                     std::sqrt(std::max(0.0, 1.0 - (t.alpha * t.alpha) / (s.alpha * s.alpha)));
    const double dir = std::sqrt(std::max(0.0, s.sigma * s.sigma - c * c));
    // eq. 12 with eps = (x - alpha_t x_0) / sigma_t:
    //   x_s = alpha_s x_0 + dir eps + c z = (dir / sigma_t) x + (alpha_s - alpha_t dir / sigma_t)
    //   x_0 + c z.
    LinearStep st;
    st.x = dir / t.sigma;
    st.h = {s.alpha - t.alpha * dir / t.sigma};
    st.noise = c;
    plan.steps.push_back(st);
  }
  return plan;
}

LinearPlan euler_ancestral_plan(const std::vector<NoiseLevel>& levels) {
  LinearPlan plan;
  plan.history = 1;
  plan.noise = true;
  for (size_t i = 0; i + 1 < levels.size(); ++i) {
    const NoiseLevel &t = levels[i], &s = levels[i + 1];
    const double kt = t.sigma_k(), ks = s.sigma_k();
    // k-diffusion's get_ancestral_step (eta 1): the step goes down to k_down, then k_up of
    // fresh noise brings it back to k_s.
    const double up = std::min(ks, std::sqrt(ks * ks * (kt * kt - ks * ks) / (kt * kt)));
    const double down = std::sqrt(std::max(0.0, ks * ks - up * up));
    // x_ve' = (down / kt) x_ve + (1 - down / kt) x_0 + up z, and x = alpha x_ve.
    LinearStep st;
    st.x = s.alpha * down / (kt * t.alpha);
    st.h = {s.alpha * (1.0 - down / kt)};
    st.noise = s.alpha * up;
    plan.steps.push_back(st);
  }
  return plan;
}

}  // namespace idiff
