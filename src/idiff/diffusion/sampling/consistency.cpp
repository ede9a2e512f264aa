// Multistep consistency sampling (Song et al. 2023, Alg. 1; cm/karras_diffusion.py
// stochastic_iterative_sampler, and sample_onestep as its one step): at each level the
// model's x_0 prediction, then fresh noise brought back to the next level,
//   x_0 = D(x, k_i),   x_ve' = x_0 + sqrt(k_{i+1}^2 - k_min^2) z,
// k_min being the schedule's lowest level (sigma_min); into sigma 0 the step returns x_0.
// It is linear in x_0 and z, so a LinearPlan.
#include "idiff/diffusion/sampling/linear_multistep.h"

#include <algorithm>
#include <cmath>

namespace idiff {

LinearPlan consistency_plan(const std::vector<NoiseLevel>& levels, double sigma_min) {
  LinearPlan plan;
  plan.history = 1;
  plan.noise = true;  // the reference draws at every step, the last one's times 0
  for (size_t i = 0; i + 1 < levels.size(); ++i) {
    const NoiseLevel& s = levels[i + 1];
    const double ks = s.clean() ? 0.0 : std::max(s.sigma_k(), sigma_min);  // np.clip
    LinearStep st;
    st.x = 0.0;
    st.h = {s.alpha};
    st.noise = s.alpha * std::sqrt(std::max(0.0, ks * ks - sigma_min * sigma_min));
    plan.steps.push_back(st);
  }
  return plan;
}

}  // namespace idiff
