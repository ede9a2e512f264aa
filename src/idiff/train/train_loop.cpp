#include "idiff/train/train_loop.h"

#include "idiff/common/autocast.h"
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/rng.h"
#include "idiff/common/strings.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/grad_reducer.h"
#include "idiff/train/ema.h"
#include "idiff/train/fp16_util.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace idiff {
namespace {

// A seed for step `step` of rank `rank`: every random draw of a step (timesteps, noise,
// dropout) depends only on (seed, step, rank), so a resumed run repeats a straight one.
uint64_t step_seed(uint64_t seed, int64_t step, int64_t rank) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull +
               static_cast<uint64_t>(rank) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x & 0x7FFFFFFFFFFFFFFFull;
}

}  // namespace

TrainLoop::TrainLoop(UNetModel model, const GaussianDiffusion& diffusion,
                     std::unique_ptr<ScheduleSampler> sampler, BatchFn data,
                     const TrainConfig& config, Logger& logger, c10::Device device,
                     DistContext* dist)
    : TrainLoop(std::move(model), make_diffusion_objective(diffusion, std::move(sampler)),
                std::move(data), config, logger, device, dist) {}

TrainLoop::TrainLoop(UNetModel model, std::unique_ptr<TrainingObjective> objective, BatchFn data,
                     const TrainConfig& config, Logger& logger, c10::Device device,
                     DistContext* dist)
    : model_(std::move(model)),
      objective_(std::move(objective)),
      data_(std::move(data)),
      config_(config),
      logger_(logger),
      device_(device),
      dist_(dist) {
  if (dist_ == nullptr) {
    own_dist_ = DistContext::single_process(device_);
    dist_ = own_dist_.get();
  }
  const TrainConfig& c = config_;
  IDIFF_REQUIRE(c.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                c.batch_size);
  microbatch_ = c.microbatch > 0 ? c.microbatch : c.batch_size;
  IDIFF_REQUIRE(c.microbatch == -1 || c.microbatch > 0, ConfigError,
                "`microbatch` must be positive or -1 (no microbatching), got ", c.microbatch);
  IDIFF_REQUIRE(microbatch_ <= c.batch_size && c.batch_size % microbatch_ == 0, ConfigError,
                "`batch_size` ", c.batch_size, " is not a multiple of `microbatch` ", microbatch_);
  ema_rates_ = parse_double_list(c.ema_rate, "`ema_rate`");
  IDIFF_REQUIRE(!ema_rates_.empty(), ConfigError,
                "`ema_rate` needs at least one rate, e.g. 0.9999");
  for (double r : ema_rates_) {
    IDIFF_REQUIRE(r > 0.0 && r < 1.0, ConfigError, "`ema_rate`: each rate must lie in (0, 1), got ",
                  python_float_repr(r));
  }
  IDIFF_REQUIRE(c.log_interval >= 1, ConfigError, "`log_interval` must be at least 1, got ",
                c.log_interval);
  IDIFF_REQUIRE(c.save_interval >= 1, ConfigError, "`save_interval` must be at least 1, got ",
                c.save_interval);
  IDIFF_REQUIRE(std::isfinite(c.lr) && c.lr >= 0, ConfigError,
                "`lr` must be a finite number, 0 or more, got ", c.lr);
  IDIFF_REQUIRE(std::isfinite(c.weight_decay) && std::isfinite(c.fp16_scale_growth), ConfigError,
                "`weight_decay` and `fp16_scale_growth` must be finite numbers");
  IDIFF_REQUIRE(c.lr_anneal_steps >= 0 && c.max_steps >= 0 && c.max_minutes >= 0, ConfigError,
                "`lr_anneal_steps`, `max_steps` and `max_minutes` must not be negative");
  fp16_ = c.use_fp16 || c.precision == "fp16";
  bf16_ = c.precision == "bf16";
  IDIFF_REQUIRE(c.precision == "fp32" || c.precision == "fp16" || c.precision == "bf16",
                ConfigError, "`precision` '", c.precision, "' is not one of fp32, fp16, bf16");
  IDIFF_REQUIRE(!bf16_ || device_.is_cuda(), ConfigError,
                "`precision` bf16 needs a CUDA device (bf16 autocast); use fp32 on the CPU");
  IDIFF_REQUIRE(!(bf16_ && c.use_fp16), ConfigError,
                "`use_fp16` True and `precision` bf16 exclude each other");
  AdamWOptions rule;
  set_optimizer_rule(rule, c.optimizer);  // a bad name fails before the model moves

  model_->to(device_);
  model_->train();
  for (auto& p : model_->parameters()) model_params_.push_back(p);
  load_and_sync_parameters();
  objective_->start(ObjectiveStart{
      model_params_, c.resume_checkpoint.empty() ? "" : parent_dir(c.resume_checkpoint),
      resume_step_, *dist_, logger_, device_});

  if (fp16_) {
    master_params_ = make_master_params(model_params_);
    model_->convert_to_fp16();
    model_params_.clear();
    for (auto& p : model_->parameters()) model_params_.push_back(p);
  } else {
    master_params_ = model_params_;
  }

  opt_ = make_optimizer();

  for (double rate : ema_rates_) {
    std::vector<at::Tensor> ema = clone_tensors(master_params_);
    load_ema(rate, ema);
    sync_params(*dist_, ema);
    ema_params_.push_back(std::move(ema));
  }
  load_and_sync_optimizer();
  reducer_ = std::make_unique<GradReducer>(*dist_, model_params_);
  step_ = resume_step_;
  last_saved_step_ = c.resume_checkpoint.empty() ? -1 : resume_step_;
}

TrainLoop::~TrainLoop() = default;

std::unique_ptr<AdamW> TrainLoop::make_optimizer() const {
  AdamWOptions opt;
  opt.lr = config_.lr;
  opt.weight_decay = config_.weight_decay;
  set_optimizer_rule(opt, config_.optimizer);
  return std::make_unique<AdamW>(master_params_, opt);
}

void TrainLoop::restart_optimizer_and_ema() {
  opt_ = make_optimizer();
  for (auto& ema : ema_params_) ema = clone_tensors(master_params_);
  logger_.log(str("step ", step_ + 1, ": the objective starts a new stage; the optimizer's state ",
                  "and the EMAs start again from the model"));
}

const ScheduleSampler& TrainLoop::schedule_sampler() const {
  const ScheduleSampler* sampler = schedule_sampler_of(*objective_);
  IDIFF_REQUIRE(sampler != nullptr, Error, "the objective ", objective_->name(),
                " has no timestep sampler");
  return *sampler;
}

StopReason TrainLoop::run_loop() {
  start_time_ = std::chrono::steady_clock::now();
  run_started_ = true;
  last_dump_time_ = start_time_;
  StopReason reason = StopReason::Finished;
  while (true) {
    if (config_.lr_anneal_steps && step_ >= config_.lr_anneal_steps) {
      reason = StopReason::Finished;
      break;
    }
    if (config_.max_steps && step_ >= config_.max_steps) {
      reason = StopReason::MaxSteps;
      break;
    }
    TrainBatch batch;
    try {
      batch = data_(step_);
    } catch (const Interrupted&) {  // a signal while the data was late: stop as after a step
      reason = StopReason::Signal;
      break;
    }
    run_step(batch);
    // Logs after the first step and then every log_interval steps, like the reference.
    if ((step_ - 1) % config_.log_interval == 0) dump_logs();
    if (step_ % config_.save_interval == 0) save();
    if (const auto stop = agreed_stop()) {
      reason = *stop;
      break;
    }
  }
  if (steps_since_dump_ > 0) dump_logs();
  if (last_saved_step_ != step_) save();
  return reason;
}

std::optional<StopReason> TrainLoop::agreed_stop() {
  bool signal = stop_check_ && !stop_check_().empty();
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count() / 60;
  bool out_of_time = config_.max_minutes > 0 && minutes >= config_.max_minutes;
  if (dist_->world_size() > 1) {
    // One tiny all-reduce per step: a signal to any rank stops them all after this step,
    // and the time limit follows rank 0's clock alone.
    const at::Tensor flags = dist_->all_reduce_sum(
        at::tensor({signal ? 1 : 0, dist_->is_main() && out_of_time ? 1 : 0}, at::kInt));
    signal = flags[0].item<int>() > 0;
    out_of_time = flags[1].item<int>() > 0;
  }
  if (signal) return StopReason::Signal;
  if (out_of_time) return StopReason::MaxMinutes;
  return std::nullopt;
}

void TrainLoop::run_step(const TrainBatch& batch) {
  {
    // The step's draws come from the default generators seeded for this step; the
    // caller's generator states are back as they were afterwards.
    ScopedSeed seed(step_seed(config_.seed, step_, dist_->rank()), device_);
    objective_->begin_step(step_);
    forward_backward(batch);
  }
  // Every rank holds the same averaged gradients: the same decision on an fp16 overflow.
  const bool took_step = fp16_ ? optimize_fp16() : (optimize_normal(), true);
  if (took_step &&
      objective_->end_step(step_, fp16_ ? unflatten_master_params(model_params_, master_params_[0])
                                        : master_params_)) {
    restart_optimizer_and_ema();
  }
  logger_.logkv_int("step", step_);
  // Images seen by all ranks together (the reference's global_batch).
  logger_.logkv_int("samples", (step_ + 1) * config_.batch_size * dist_->world_size());
  if (fp16_) logger_.logkv("lg_loss_scale", lg_loss_scale_);
  ++step_;
  ++steps_since_dump_;
}

void TrainLoop::forward_backward(const TrainBatch& batch) {
  for (auto& p : model_params_) {
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
  }
  const int64_t n = batch.images.size(0);
  IDIFF_REQUIRE(n == config_.batch_size, Error, "the data gave a batch of ", n,
                " images, expected `batch_size` ", config_.batch_size);
  // Timesteps and noise are drawn once for the whole batch and sliced per microbatch, so
  // microbatching changes only the summation order, not the update.
  const at::Tensor images = batch.images.to(device_);
  const ObjectiveDraws draws = objective_->draw(batch, images);
  std::vector<at::Tensor> all_losses;
  for (int64_t i = 0; i < n; i += microbatch_) {
    const int64_t len = std::min(microbatch_, n - i);
    const at::Tensor micro = images.narrow(0, i, len);
    const at::Tensor t = draws.t.narrow(0, i, len), weights = draws.weights.narrow(0, i, len);
    ModelKwargs kw;
    if (batch.kwargs.y.defined()) kw.y = batch.kwargs.y.narrow(0, i, len).to(device_);
    if (batch.kwargs.low_res.defined())
      kw.low_res = batch.kwargs.low_res.narrow(0, i, len).to(device_);

    ModelFn model_fn = [this, kw](const at::Tensor& x, const at::Tensor& ts) {
      return model_->forward_kwargs(x, ts, kw);
    };
    std::map<std::string, at::Tensor> losses;
    {
      AutocastGuard autocast(bf16_ ? device_.type() : c10::DeviceType::CPU, bf16_);
      losses = objective_->losses(model_fn, micro, draws, i, len, kw);
    }
    all_losses.push_back(losses.at("loss").detach());
    accumulate_stats(t, losses, weights);
    // Each microbatch contributes its share of the batch mean, so the accumulated gradient
    // equals the full batch's (the reference sums microbatch means instead).
    at::Tensor loss = (losses.at("loss") * weights).mean() * (static_cast<double>(len) / n);
    if (fp16_) loss = loss * std::pow(2.0, lg_loss_scale_);
    // The ranks average their gradients once per step, in buckets launched from within
    // the last microbatch's backward as its gradients become final.
    if (i + len >= n) reducer_->prepare_for_backward();
    loss.backward();
  }
  reducer_->finish();  // every .grad() now holds the mean over the ranks
  if (objective_->observes()) {
    // Every rank's timesteps and losses, in rank order, so every rank's sampler stays the
    // same (the reference's update_with_local_losses).
    at::Tensor ts = draws.t, ls = at::cat(all_losses);
    if (dist_->is_distributed()) {
      ts = at::cat(dist_->all_gather(ts));
      ls = at::cat(dist_->all_gather(ls));
    }
    objective_->observe(ts, ls);
  }
}

bool TrainLoop::optimize_fp16() {
  if (!grads_are_finite(model_params_)) {
    lg_loss_scale_ -= 1;
    logger_.log("Found NaN, decreased lg_loss_scale to " + python_float_repr(lg_loss_scale_));
    return false;
  }
  model_grads_to_master_grads(model_params_, master_params_);
  master_params_[0].mutable_grad().mul_(1.0 / std::pow(2.0, lg_loss_scale_));
  optimize_normal();
  master_params_to_model_params(model_params_, master_params_);
  lg_loss_scale_ += config_.fp16_scale_growth;
  return true;
}

void TrainLoop::optimize_normal() {
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (const auto& p : master_params_) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    const auto norms = at::_foreach_norm(grads, 2);
    at::Tensor sq = at::stack(norms).to(at::kDouble).pow(2).sum();
    grad_norm_sum_ = grad_norm_sum_.defined() ? grad_norm_sum_ + sq.sqrt() : sq.sqrt();
    ++grad_norm_count_;
  }
  anneal_lr();
  opt_->step();
  for (size_t i = 0; i < ema_rates_.size(); ++i) {
    update_ema(ema_params_[i], master_params_, ema_rates_[i]);
  }
}

void TrainLoop::anneal_lr() {
  if (!config_.lr_anneal_steps) return;
  const double frac_done = static_cast<double>(step_) / config_.lr_anneal_steps;
  opt_->set_lr(config_.lr * (1 - frac_done));
}

}  // namespace idiff
