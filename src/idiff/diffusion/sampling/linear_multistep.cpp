#include "idiff/diffusion/sampling/linear_multistep.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace idiff {

std::vector<NoiseLevel> levels_of(const NoiseSchedule& ns, const StepSchedule& schedule) {
  std::vector<NoiseLevel> out;
  for (double t : schedule.levels) out.push_back(ns.level(t));
  return out;
}

int64_t multistep_order(int64_t order, int64_t i, int64_t n, bool lower_order_final,
                        bool ends_clean) {
  int64_t p = std::min(order, i + 1);  // warm-up: i earlier x_0 predictions exist
  if (i == n - 1 && (ends_clean || (lower_order_final && n < 15))) p = 1;
  if (i == n - 2 && lower_order_final && n < 15) p = std::min<int64_t>(p, 2);
  return p;
}

namespace {

// Row layout: [t_model, alpha, sigma, p_x, p_h..., p_z, c_x, c_last, c_h...].
class LinearMultistepSolver : public Solver {
 public:
  LinearMultistepSolver(std::string name, const StepSchedule& schedule,
                        const std::vector<NoiseLevel>& levels, Denoiser denoiser, LinearPlan plan)
      : Solver(schedule),
        name_(std::move(name)),
        levels_(levels),
        denoiser_(std::move(denoiser)),
        plan_(std::move(plan)) {
    TORCH_CHECK(static_cast<int64_t>(plan_.steps.size()) == num_steps(), "a plan of ",
                plan_.steps.size(), " steps for a schedule of ", num_steps());
  }

  std::string name() const override { return name_; }
  bool draws_noise() const override { return plan_.noise; }
  bool keeps_history() const override { return plan_.history > 1 || plan_.corrector; }

  at::Tensor coefficients() const override {
    const int64_t H = plan_.history, K = 3 + (1 + H + 1) + (2 + H);
    at::Tensor table = at::zeros({num_steps(), K}, at::kDouble);
    auto a = table.accessor<double, 2>();
    for (int64_t i = 0; i < num_steps(); ++i) {
      const LinearStep& s = plan_.steps[i];
      const NoiseLevel& l = levels_[i];
      a[i][0] = l.t_model;
      a[i][1] = l.alpha;
      a[i][2] = l.sigma;
      a[i][3] = s.x;
      for (size_t k = 0; k < s.h.size(); ++k) a[i][4 + k] = s.h[k];
      a[i][4 + H] = s.noise;
      a[i][5 + H] = s.corr_x;
      a[i][6 + H] = s.corr_last;
      for (size_t k = 0; k < s.corr_h.size(); ++k) a[i][7 + H + k] = s.corr_h[k];
    }
    return table;
  }

  void reset(const at::Tensor& x) override {
    history_.clear();
    for (int64_t k = 0; k < plan_.history; ++k) history_.push_back(at::zeros_like(x));
    if (plan_.corrector) last_ = at::zeros_like(x);
  }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                    int64_t) override {
    TORCH_CHECK(!history_.empty(), "Solver::reset was not called");
    const int64_t H = plan_.history;
    const at::Tensor m = denoiser_(x, row[0], row[1], row[2]);
    // Newest first: shift the history down by one (in place: the buffers stay put).
    for (int64_t k = H - 1; k > 0; --k) history_[k].copy_(history_[k - 1]);
    history_[0].copy_(m);
    at::Tensor xc = x;
    if (plan_.corrector) {
      xc = x * row[5 + H] + last_ * row[6 + H];
      for (int64_t k = 0; k < H; ++k) xc = xc + history_[k] * row[7 + H + k];
      last_.copy_(xc);
    }
    at::Tensor next = xc * row[3];
    for (int64_t k = 0; k < H; ++k) next = next + history_[k] * row[4 + k];
    if (plan_.noise) next = next + noise * row[4 + H];
    return {next, m};
  }

 private:
  std::string name_;
  std::vector<NoiseLevel> levels_;
  Denoiser denoiser_;
  LinearPlan plan_;
  std::vector<at::Tensor> history_;
  at::Tensor last_;
};

}  // namespace

std::unique_ptr<Solver> make_linear_solver(std::string name, const StepSchedule& schedule,
                                           const std::vector<NoiseLevel>& levels, Denoiser denoiser,
                                           LinearPlan plan) {
  return std::make_unique<LinearMultistepSolver>(std::move(name), schedule, levels,
                                                 std::move(denoiser), std::move(plan));
}

}  // namespace idiff
