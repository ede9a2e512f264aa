#include "idiff/diffusion/sampling/repaint.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

namespace idiff {

std::vector<int64_t> repaint_path(int64_t n, const RepaintOptions& o) {
  IDIFF_REQUIRE(o.jump_length >= 1, ConfigError, "`jump_length` must be at least 1, got ",
                o.jump_length);
  IDIFF_REQUIRE(o.resample_jumps >= 1, ConfigError,
                "`resample_jumps` must be at least 1 (1: no going back), got ", o.resample_jumps);
  // diffusers' set_timesteps: its t counts down N-1 .. 0 (the step from level N - t - 1 to
  // N - t) and back up, the sample is at level N - t after each entry; after the step at a
  // multiple of jump_length below N - jump_length it goes back up, resample_jumps - 1 times.
  std::map<int64_t, int64_t> jumps;
  for (int64_t j = 0; j < n - o.jump_length; j += o.jump_length) jumps[j] = o.resample_jumps - 1;
  std::vector<int64_t> path = {0};
  int64_t t = n;
  while (t >= 1) {
    --t;
    path.push_back(n - t);
    auto it = jumps.find(t);
    if (it == jumps.end() || it->second == 0) continue;
    --it->second;
    for (int64_t k = 0; k < o.jump_length; ++k) path.push_back(n - (++t));
  }
  return path;
}

namespace {

StepSchedule visited_levels(const StepSchedule& inner, const std::vector<int64_t>& path) {
  StepSchedule s;
  for (int64_t i : path) s.levels.push_back(inner.levels[static_cast<size_t>(i)]);
  return s;
}

// Row: [the inner row of a step down (zeros going up) | alpha, sigma of the level reached
// down (the known part's noise) | alpha_hi / alpha_lo, the forward process' noise going up].
// Variants: 0 a step up, 1 + the inner's variant a step down.
class RepaintSolver : public Solver {
 public:
  RepaintSolver(std::unique_ptr<Solver> inner, const NoiseSchedule& ns, EditTask task,
                std::vector<int64_t> path)
      : Solver(visited_levels(inner->schedule(), path)),
        inner_(std::move(inner)),
        task_(std::move(task)),
        path_(std::move(path)) {
    const at::Tensor inner_rows = inner_->coefficients();
    const int64_t k = inner_rows.size(1);
    table_ = at::zeros({num_steps(), k + 4}, at::kDouble);
    for (int64_t i = 0; i < num_steps(); ++i) {
      const int64_t from = path_[i], to = path_[i + 1];
      const NoiseLevel a = ns.level(inner_->schedule().levels[from]);
      const NoiseLevel b = ns.level(inner_->schedule().levels[to]);
      at::Tensor row = table_[i];
      if (to > from) {
        row.narrow(0, 0, k).copy_(inner_rows[from]);
        row[k] = b.alpha;
        row[k + 1] = b.sigma;
      } else {
        const double ratio = b.alpha / a.alpha;  // a: the lower level, b: the one above it
        row[k + 2] = ratio;
        row[k + 3] =
            std::sqrt(std::max(0.0, b.sigma * b.sigma - ratio * ratio * a.sigma * a.sigma));
      }
    }
    inner_width_ = k;
  }

  std::string name() const override { return inner_->name() + " with RePaint"; }
  at::Tensor coefficients() const override { return table_; }
  bool draws_noise() const override { return true; }
  bool down(int64_t i) const { return path_[i + 1] > path_[i]; }
  int64_t variant(int64_t i) const override { return down(i) ? 1 + inner_->variant(path_[i]) : 0; }
  int64_t model_calls(int64_t i) const override {
    return down(i) ? inner_->model_calls(path_[i]) : 0;
  }
  void reset(const at::Tensor& x) override { inner_->reset(x); }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                    int64_t variant) override {
    const int64_t k = inner_width_;
    if (variant == 0) return {x * row[k + 2] + noise * row[k + 3], at::Tensor()};
    const SampleOutput out = inner_->step(x, row.narrow(0, 0, k), noise, variant - 1);
    const at::Tensor known = task_.known * row[k] + noise * row[k + 1];
    return {task_.mix(known, out.sample), out.pred_xstart};
  }

 private:
  std::unique_ptr<Solver> inner_;
  EditTask task_;
  std::vector<int64_t> path_;
  at::Tensor table_;
  int64_t inner_width_ = 0;
};

}  // namespace

std::unique_ptr<Solver> make_repaint_solver(std::unique_ptr<Solver> inner, const NoiseSchedule& ns,
                                            EditTask task, const RepaintOptions& options) {
  std::vector<int64_t> path = repaint_path(inner->num_steps(), options);
  const bool goes_back = static_cast<int64_t>(path.size()) - 1 > inner->num_steps();
  IDIFF_REQUIRE(!goes_back || !inner->keeps_history(), ConfigError, "`resample_jumps` ",
                options.resample_jumps, ": the sampler ", inner->name(),
                " builds on earlier steps, which going back up would break; use ddpm, ddim, "
                "euler, euler_a or heun, or `resample_jumps` 1");
  return std::make_unique<RepaintSolver>(std::move(inner), ns, std::move(task), std::move(path));
}

}  // namespace idiff
