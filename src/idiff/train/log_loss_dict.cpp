// The training loop's statistics (reference: train_util.py log_loss_dict and the logkv
// calls of TrainLoop): every loss term's mean and its mean per quarter of the timesteps
// (loss_q0 .. loss_q3), the gradient and parameter norms, and the throughput, accumulated
// on the device between dumps (no per-step host sync) and averaged over the ranks in one
// collective when they are written.
#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/train/train_loop.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace idiff {

void TrainLoop::accumulate_stats(const at::Tensor& t,
                                 const std::map<std::string, at::Tensor>& losses,
                                 const at::Tensor& weights) {
  at::NoGradGuard no_grad;
  const at::Tensor quartile =
      (t.to(at::kLong) * 4).div(objective_->num_timesteps(), "floor").clamp(0, 3);  // [N]
  if (!stat_counts_.defined()) {
    stat_counts_ = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device_));
    nonfinite_ = at::zeros({}, at::TensorOptions().dtype(at::kBool).device(device_));
  }
  stat_counts_.index_add_(0, quartile, at::ones_like(quartile, at::kDouble));
  for (const auto& [key, value] : losses) {
    at::Tensor& sums = stat_sums_[key];
    if (!sums.defined())
      sums = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device_));
    sums.index_add_(0, quartile, (value.detach() * weights).to(at::kDouble));
  }
  nonfinite_.logical_or_(at::isfinite(losses.at("loss").detach()).all().logical_not());
}

bool TrainLoop::any_nonfinite_loss() {
  if (!nonfinite_.defined()) return false;  // no step yet (the same on every rank)
  return dist_->all_reduce_sum(nonfinite_.to(at::kInt)).item<int>() > 0;
}

void TrainLoop::dump_logs() {
  if (stat_counts_.defined()) {
    // The statistics of every rank in one collective: [counts (4), sums (4 per key), the
    // non-finite flag]; the sums over ranks give the means over all their samples.
    std::vector<at::Tensor> parts{stat_counts_};
    for (const auto& [key, sums] : stat_sums_) parts.push_back(sums);
    parts.push_back(nonfinite_.to(at::kDouble).reshape({1}));
    const at::Tensor packed = dist_->all_reduce_sum(at::cat(parts)).cpu();
    IDIFF_REQUIRE(packed[-1].item<double>() == 0, Error,
                  "the loss became non-finite (NaN or inf) before step ", step_,
                  dist_->world_size() > 1 ? " (on at least one rank)" : "",
                  "; stopping without saving (the last checkpoint, step ",
                  last_saved_step_ < 0 ? std::string("none") : std::to_string(last_saved_step_),
                  ", is intact). Try a lower `lr`.");
    const at::Tensor counts = packed.narrow(0, 0, 4);
    const double total = counts.sum().item<double>();
    int64_t offset = 4;
    for (const auto& entry : stat_sums_) {
      const std::string& key = entry.first;
      const at::Tensor sums = packed.narrow(0, offset, 4);
      offset += 4;
      logger_.logkv_mean(key, sums.sum().item<double>() / total);
      for (int q = 0; q < 4; ++q) {
        const double c = counts[q].item<double>();
        if (c > 0) logger_.logkv_mean(key + "_q" + std::to_string(q), sums[q].item<double>() / c);
      }
    }
    stat_sums_.clear();
    stat_counts_.zero_();
  }
  if (grad_norm_count_ > 0) {
    logger_.logkv_mean("grad_norm", grad_norm_sum_.item<double>() / grad_norm_count_);
    grad_norm_sum_ = at::Tensor();
    grad_norm_count_ = 0;
  }
  {
    at::NoGradGuard no_grad;
    const auto norms = at::_foreach_norm(master_params_, 2);
    logger_.logkv_mean("param_norm",
                       std::sqrt(at::stack(norms).to(at::kDouble).pow(2).sum().item<double>()));
  }
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - last_dump_time_).count();
  double steps_per_sec = 0, images_per_sec = 0;
  if (steps_since_dump_ > 0 && secs > 0) {
    steps_per_sec = steps_since_dump_ / secs;
    images_per_sec =
        static_cast<double>(steps_since_dump_ * config_.batch_size * dist_->world_size()) / secs;
    logger_.logkv("steps_per_sec", steps_per_sec);
    logger_.logkv("images_per_sec", images_per_sec);
  }
  last_dump_time_ = now;
  steps_since_dump_ = 0;
  last_logged_ = logger_.dumpkvs();
  if (steps_per_sec > 0) logger_.log(progress_line(steps_per_sec, images_per_sec));
}

std::string TrainLoop::progress_line(double steps_per_sec, double images_per_sec) const {
  // The step this run ends at, when a limit says (--lr_anneal_steps, --max_steps).
  int64_t last = config_.lr_anneal_steps;
  if (config_.max_steps > 0)
    last = last > 0 ? std::min(last, config_.max_steps) : config_.max_steps;
  double left = -1;  // seconds; unknown without a limit
  if (last > 0) left = static_cast<double>(std::max<int64_t>(0, last - step_)) / steps_per_sec;
  if (config_.max_minutes > 0 && run_started_) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
    const double by_clock = std::max(0.0, config_.max_minutes * 60 - elapsed);
    left = left < 0 ? by_clock : std::min(left, by_clock);
  }
  char rate[64];
  std::snprintf(rate, sizeof(rate), "%.1f images/s", images_per_sec);
  std::string line = str("step ", step_, last > 0 ? str("/", last) : std::string(), ", ", rate);
  if (left >= 0) {
    const auto s = static_cast<int64_t>(std::lround(left));
    line += s >= 60 ? str(", ", s / 60, "m", s % 60 < 10 ? "0" : "", s % 60, "s left")
                    : str(", ", s, "s left");
  }
  return line;
}

}  // namespace idiff
