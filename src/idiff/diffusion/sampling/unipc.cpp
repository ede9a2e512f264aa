// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
// of Diffusion Models"): the multistep predictor UniP and the corrector UniC in data
// prediction, with B(h) = h (bh1) or e^h - 1 (bh2), as a LinearPlan. The corrector refines
// x at level i with the model output there, which the next predictor needs anyway: no extra
// model call. Orders follow diffusers' UniPCMultistepScheduler (warm-up from 1; with
// lower_order_final the order falls to the steps left), the step into sigma 0 is first order.
#include "idiff/diffusion/sampling/linear_multistep.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace idiff {
namespace {

// The weights rho of the order-q update from level `from` to level `to` over the x_0
// predictions at `from` and the q - 1 levels before it (rks: their log-SNR offsets over h,
// then 1): the solution of R rho = b with R_jk = rk_k^j and b_j = j! phi_{j+1}(hh) / B(h)
// (Zhao et al. eq. 8, Alg. 2-3). The predictor uses the first q - 1 equations
// (corrector = false), the corrector all q.
std::vector<double> unipc_rhos(const std::vector<double>& rks, double hh, double B_h,
                               bool corrector) {
  const auto q = static_cast<int64_t>(rks.size());
  double h_phi_k = std::expm1(hh) / hh - 1.0, factorial = 1.0;
  at::Tensor R = at::empty({q, q}, at::kDouble), b = at::empty({q}, at::kDouble);
  for (int64_t j = 0; j < q; ++j) {
    for (int64_t k = 0; k < q; ++k) R[j][k] = std::pow(rks[k], static_cast<double>(j));
    b[j] = h_phi_k * factorial / B_h;
    factorial *= static_cast<double>(j + 2);
    h_phi_k = h_phi_k / hh - 1.0 / factorial;
  }
  if (!corrector) {
    if (q == 1) return {};
    if (q == 2) return {0.5};
    R = R.narrow(0, 0, q - 1).narrow(1, 0, q - 1);
    b = b.narrow(0, 0, q - 1);
  } else if (q == 1) {
    return {0.5};
  }
  const at::Tensor rho = at::linalg_solve(R, b);
  return std::vector<double>(rho.data_ptr<double>(), rho.data_ptr<double>() + rho.numel());
}

}  // namespace

LinearPlan unipc_plan(const std::vector<NoiseLevel>& lv, int64_t order, bool bh2,
                      bool lower_order_final) {
  IDIFF_REQUIRE(order >= 1 && order <= 3, ConfigError, "`order`: UniPC's order is 1, 2 or 3, got ",
                order);
  LinearPlan plan;
  plan.history = order + 1;  // the corrector of an order-q step reads q + 1 predictions
  plan.corrector = true;
  const int64_t n = static_cast<int64_t>(lv.size()) - 1, H = plan.history;
  std::vector<int64_t> orders;
  for (int64_t i = 0; i < n; ++i) {
    int64_t p = lower_order_final ? std::min(order, n - i) : order;
    p = std::min(p, i + 1);
    if (lv[i + 1].clean()) p = 1;
    orders.push_back(p);
  }
  const auto B = [bh2](double hh) { return bh2 ? std::expm1(hh) : hh; };
  for (int64_t i = 0; i < n; ++i) {
    LinearStep st;
    st.h.assign(static_cast<size_t>(H), 0.0);
    st.corr_h.assign(static_cast<size_t>(H), 0.0);
    // UniC at level i (history after this step's call: h_0 = m_i, h_1 = m_{i-1}, ...), of the
    // order the predictor into level i had.
    if (i > 0) {
      const int64_t q = orders[i - 1];
      const NoiseLevel &to = lv[i], &from = lv[i - 1];
      const double h = to.lambda - from.lambda, hh = -h, B_h = B(hh);
      std::vector<double> rks;
      for (int64_t k = 1; k < q; ++k) rks.push_back((lv[i - 1 - k].lambda - from.lambda) / h);
      rks.push_back(1.0);
      const std::vector<double> rho = unipc_rhos(rks, hh, B_h, true);
      // x_c = (sigma_i / sigma_{i-1}) last - alpha_i (e^hh - 1) m_{i-1}
      //       - alpha_i B_h (sum_k rho_k (m_{i-1-k} - m_{i-1}) / rk_k + rho_q (m_i - m_{i-1}))
      st.corr_x = 0.0;
      st.corr_last = to.sigma / from.sigma;
      const double a = to.alpha;
      st.corr_h[1] = -a * std::expm1(hh);
      for (int64_t k = 1; k < q; ++k) {
        const double w = a * B_h * rho[k - 1] / rks[k - 1];
        st.corr_h[1 + k] -= w;
        st.corr_h[1] += w;
      }
      st.corr_h[0] -= a * B_h * rho[q - 1];
      st.corr_h[1] += a * B_h * rho[q - 1];
    }
    // UniP from level i to i + 1 (h_0 = m_i, h_k = m_{i-k}).
    const int64_t p = orders[i];
    const NoiseLevel &from = lv[i], &to = lv[i + 1];
    if (to.clean()) {
      st.h[0] = 1.0;  // x_0 itself
    } else {
      const double h = to.lambda - from.lambda, hh = -h, B_h = B(hh);
      std::vector<double> rks;
      for (int64_t k = 1; k < p; ++k) rks.push_back((lv[i - k].lambda - from.lambda) / h);
      rks.push_back(1.0);
      const std::vector<double> rho = unipc_rhos(rks, hh, B_h, false);
      // x_{i+1} = (sigma_{i+1} / sigma_i) x_c - alpha (e^hh - 1) m_i
      //           - alpha B_h sum_k rho_k (m_{i-k} - m_i) / rk_k
      st.x = to.sigma / from.sigma;
      st.h[0] = -to.alpha * std::expm1(hh);
      for (int64_t k = 1; k < p; ++k) {
        const double w = to.alpha * B_h * rho[k - 1] / rks[k - 1];
        st.h[k] -= w;
        st.h[0] += w;
      }
    }
    plan.steps.push_back(st);
  }
  return plan;
}

}  // namespace idiff
