#include "idiff/train/train_loop.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/dist/data_parallel.h"
#include "idiff/dist/dist_context.h"
#include "idiff/dist/grad_reducer.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"
#include "idiff/common/autocast.h"
#include "idiff/train/ema.h"
#include "idiff/train/fp16_util.h"
#include "idiff/train/optimizer_file.h"
#include "idiff/train/signals.h"

#include <ATen/ATen.h>

#include <sys/stat.h>
#include <algorithm>
#include <cmath>
#include <cstdio>

namespace idiff {
namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string dirname_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string step_name(const char* prefix, int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%06lld.pt", prefix, static_cast<long long>(step));
  return buf;
}

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

// The loss weights 1 / (T p_t) of given timesteps (as ScheduleSampler::sample gives them).
at::Tensor weights_for(const ScheduleSampler& sampler, const at::Tensor& t) {
  const at::Tensor probs = at::tensor(sampler.probabilities(), at::kDouble);
  const at::Tensor w = 1.0 / (static_cast<double>(probs.size(0)) * probs.index_select(0, t.cpu()));
  return w.to(at::kFloat).to(t.device());
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  for (const at::Tensor& t : tensors) {
    if (!at::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

std::vector<at::Tensor> buffers_of(const UNetModel& model) {
  std::vector<at::Tensor> out;
  for (const auto& b : model->buffers()) out.push_back(b);
  return out;
}

}  // namespace

std::string python_float_repr(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Python writes integral floats with ".0" and exponents with two digits at least.
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

int64_t parse_resume_step_from_filename(const std::string& filename) {
  const auto pos = filename.rfind("model");
  if (pos == std::string::npos) return 0;
  const std::string rest = filename.substr(pos + 5);
  const std::string digits = rest.substr(0, rest.find('.'));
  if (digits.empty()) return 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
  }
  // A step beyond kMaxSteps would overflow the batch plan and the step counters.
  return parse_int(digits, str("--resume_checkpoint ", filename, ": the step number in its name"),
                   0, kMaxSteps);
}

std::string ema_checkpoint_name(double rate, int64_t step) {
  return step_name(("ema_" + python_float_repr(rate) + "_").c_str(), step);
}

TrainLoop::TrainLoop(UNetModel model, const GaussianDiffusion& diffusion,
                     std::unique_ptr<ScheduleSampler> sampler, BatchFn data,
                     const TrainConfig& config, Logger& logger, c10::Device device,
                     DistContext* dist)
    : model_(std::move(model)),
      diffusion_(diffusion),
      sampler_(std::move(sampler)),
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
  IDIFF_REQUIRE(c.batch_size >= 1, ConfigError, "--batch_size must be at least 1, got ", c.batch_size);
  microbatch_ = c.microbatch > 0 ? c.microbatch : c.batch_size;
  IDIFF_REQUIRE(c.microbatch == -1 || c.microbatch > 0, ConfigError,
                "--microbatch must be positive or -1 (no microbatching), got ", c.microbatch);
  IDIFF_REQUIRE(microbatch_ <= c.batch_size && c.batch_size % microbatch_ == 0, ConfigError,
                "--batch_size ", c.batch_size, " is not a multiple of --microbatch ", microbatch_);
  ema_rates_ = parse_double_list(c.ema_rate, "--ema_rate");
  IDIFF_REQUIRE(!ema_rates_.empty(), ConfigError, "--ema_rate needs at least one rate, e.g. 0.9999");
  for (double r : ema_rates_) {
    IDIFF_REQUIRE(r > 0.0 && r < 1.0, ConfigError, "--ema_rate: each rate must lie in (0, 1), got ",
                  python_float_repr(r));
  }
  IDIFF_REQUIRE(c.log_interval >= 1, ConfigError, "--log_interval must be at least 1, got ",
                c.log_interval);
  IDIFF_REQUIRE(c.save_interval >= 1, ConfigError, "--save_interval must be at least 1, got ",
                c.save_interval);
  IDIFF_REQUIRE(std::isfinite(c.lr) && c.lr >= 0, ConfigError,
                "--lr must be a finite number, 0 or more, got ", c.lr);
  IDIFF_REQUIRE(std::isfinite(c.weight_decay) && std::isfinite(c.fp16_scale_growth), ConfigError,
                "--weight_decay and --fp16_scale_growth must be finite numbers");
  IDIFF_REQUIRE(c.lr_anneal_steps >= 0 && c.max_steps >= 0 && c.max_minutes >= 0, ConfigError,
                "--lr_anneal_steps, --max_steps and --max_minutes must not be negative");
  fp16_ = c.use_fp16 || c.precision == "fp16";
  bf16_ = c.precision == "bf16";
  IDIFF_REQUIRE(c.precision == "fp32" || c.precision == "fp16" || c.precision == "bf16", ConfigError,
                "--precision '", c.precision, "' is not one of fp32, fp16, bf16");
  IDIFF_REQUIRE(!bf16_ || device_.is_cuda(), ConfigError,
                "--precision bf16 needs a CUDA device (bf16 autocast); use fp32 on the CPU");
  IDIFF_REQUIRE(!(bf16_ && c.use_fp16), ConfigError,
                "--use_fp16 True and --precision bf16 exclude each other");

  model_->to(device_);
  model_->train();
  for (auto& p : model_->parameters()) model_params_.push_back(p);
  load_and_sync_parameters();

  if (fp16_) {
    master_params_ = make_master_params(model_params_);
    model_->convert_to_fp16();
    model_params_.clear();
    for (auto& p : model_->parameters()) model_params_.push_back(p);
  } else {
    master_params_ = model_params_;
  }

  AdamWOptions opt;
  opt.lr = c.lr;
  opt.weight_decay = c.weight_decay;
  opt_ = std::make_unique<AdamW>(master_params_, opt);

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

// Only rank 0 reads the checkpoint files (as the reference's dist_util.load_state_dict);
// the other ranks receive the values, so they need no access to them.
void TrainLoop::load_and_sync_parameters() {
  const std::string& resume = config_.resume_checkpoint;
  if (!resume.empty()) {
    resume_step_ = parse_resume_step_from_filename(resume);
    if (dist_->is_main()) {
      logger_.log("loading model from checkpoint: " + resume + "...");
      load_state_dict(*model_, load_tensor_file(resume), resume);
    }
  }
  sync_params(*dist_, model_params_);
  sync_params(*dist_, buffers_of(model_));
}

void TrainLoop::load_ema(double rate, std::vector<at::Tensor>& ema) {
  const std::string& resume = config_.resume_checkpoint;
  if (resume.empty() || !dist_->is_main()) return;
  const std::string path = dirname_of(resume) + "/" + ema_checkpoint_name(rate, resume_step_);
  if (!file_exists(path)) {
    logger_.warn("no EMA checkpoint " + path + ": EMA " + python_float_repr(rate) +
                 " restarts from the model weights");
    return;
  }
  logger_.log("loading EMA from checkpoint: " + path + "...");
  const TensorMap sd = load_tensor_file(path);
  std::vector<at::Tensor> loaded;
  for (const auto& item : model_->named_parameters()) {
    const at::Tensor& t = sd.at(item.key(), path);
    IDIFF_REQUIRE(t.is_floating_point() && at::isfinite(t).all().item<bool>(), FileError, path,
                  ": ", item.key(),
                  t.is_floating_point() ? " holds NaN or infinity" : " is not floating point",
                  "; the EMA checkpoint is broken");
    loaded.push_back(t.to(device_, at::kFloat));
  }
  ema = fp16_ ? make_master_params(loaded) : loaded;
  for (auto& t : ema) t = t.detach().clone();
}

void TrainLoop::load_and_sync_optimizer() {
  const std::string& resume = config_.resume_checkpoint;
  if (resume.empty()) return;
  const std::string path = dirname_of(resume) + "/" + step_name("opt", resume_step_);
  int64_t loaded = 0;
  if (dist_->is_main()) {
    if (file_exists(path)) {
      logger_.log("loading optimizer state from checkpoint: " + path);
      std::vector<std::vector<int64_t>> shapes;
      for (const auto& p : model_->parameters()) shapes.push_back(p.sizes().vec());
      load_optimizer_file(path, *opt_, shapes);
      loaded = 1;
    } else {
      logger_.warn("no optimizer checkpoint " + path + ": AdamW moments restart from zero");
    }
  }
  if (!dist_->is_distributed()) return;
  // Rank 0 says whether it loaded a state; if so the others make room and receive it.
  std::vector<at::Tensor> flag{at::full({1}, loaded, at::kLong)};
  dist_->broadcast(flag, 0);
  if (flag[0].item<int64_t>() == 0) return;
  // Every parameter gets a state (zeros where rank 0's file had none: what AdamW starts
  // from), so every rank sends and receives the same tensors.
  std::vector<AdamWParamState> state = opt_->state();
  for (size_t i = 0; i < state.size(); ++i) {
    if (state[i].exp_avg.defined()) continue;
    state[i].step = at::zeros({}, at::TensorOptions(at::kFloat));
    state[i].exp_avg = at::zeros_like(master_params_[i], at::MemoryFormat::Contiguous);
    state[i].exp_avg_sq = at::zeros_like(master_params_[i], at::MemoryFormat::Contiguous);
  }
  opt_->set_state(std::move(state));
  std::vector<at::Tensor> tensors;
  for (const auto& st : opt_->state()) {
    tensors.push_back(st.step);
    tensors.push_back(st.exp_avg);
    tensors.push_back(st.exp_avg_sq);
  }
  sync_params(*dist_, tensors);
}

StopReason TrainLoop::run_loop() {
  install_stop_signal_handlers();
  start_time_ = std::chrono::steady_clock::now();
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
  bool signal = stop_requested();
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
  at::manual_seed(step_seed(config_.seed, step_, dist_->rank()));
  forward_backward(batch);
  if (fp16_) {
    optimize_fp16();  // every rank holds the same averaged gradients: the same decision
  } else {
    optimize_normal();
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
                " images, expected --batch_size ", config_.batch_size);
  // Timesteps and noise are drawn once for the whole batch and sliced per microbatch, so
  // microbatching changes only the summation order, not the update.
  at::Tensor t_all, weights_all;
  if (batch.timesteps.defined()) {
    IDIFF_REQUIRE(batch.timesteps.sizes() == at::IntArrayRef{n}, Error,
                  "the batch's timesteps have shape ", batch.timesteps.sizes(), ", expected [", n,
                  "]");
    t_all = batch.timesteps.to(device_, at::kLong);
    weights_all = weights_for(*sampler_, t_all);
  } else {
    std::tie(t_all, weights_all) = sampler_->sample(n, device_);
  }
  const at::Tensor images = batch.images.to(device_);
  const at::Tensor noise_all = batch.noise.defined() ? batch.noise.to(device_, images.scalar_type())
                                                     : at::randn_like(images);
  IDIFF_REQUIRE(noise_all.sizes() == images.sizes(), Error, "the batch's noise has shape ",
                noise_all.sizes(), ", expected ", images.sizes());
  std::vector<at::Tensor> all_losses;
  for (int64_t i = 0; i < n; i += microbatch_) {
    const int64_t len = std::min(microbatch_, n - i);
    const at::Tensor micro = images.narrow(0, i, len);
    const at::Tensor t = t_all.narrow(0, i, len), weights = weights_all.narrow(0, i, len);
    ModelKwargs kw;
    if (batch.kwargs.y.defined()) kw.y = batch.kwargs.y.narrow(0, i, len).to(device_);
    if (batch.kwargs.low_res.defined()) kw.low_res = batch.kwargs.low_res.narrow(0, i, len).to(device_);

    ModelFn model_fn = [this, kw](const at::Tensor& x, const at::Tensor& ts) {
      return model_->forward_kwargs(x, ts, kw);
    };
    std::map<std::string, at::Tensor> losses;
    {
      AutocastGuard autocast(bf16_ ? device_.type() : c10::DeviceType::CPU, bf16_);
      losses = diffusion_.training_losses(model_fn, micro, t, noise_all.narrow(0, i, len));
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
  if (auto* aware = dynamic_cast<LossAwareSampler*>(sampler_.get())) {
    // Every rank's timesteps and losses, in rank order, so every rank's sampler stays the
    // same (the reference's update_with_local_losses).
    at::Tensor ts = t_all, ls = at::cat(all_losses);
    if (dist_->is_distributed()) {
      ts = at::cat(dist_->all_gather(ts));
      ls = at::cat(dist_->all_gather(ls));
    }
    aware->update_with_all_losses(ts, ls);
  }
}

void TrainLoop::accumulate_stats(const at::Tensor& t, const std::map<std::string, at::Tensor>& losses,
                                 const at::Tensor& weights) {
  at::NoGradGuard no_grad;
  const at::Tensor quartile =
      (t.to(at::kLong) * 4).div(diffusion_.num_timesteps(), "floor").clamp(0, 3);  // [N]
  if (!stat_counts_.defined()) {
    stat_counts_ = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device_));
    nonfinite_ = at::zeros({}, at::TensorOptions().dtype(at::kBool).device(device_));
  }
  stat_counts_.index_add_(0, quartile, at::ones_like(quartile, at::kDouble));
  for (const auto& [key, value] : losses) {
    at::Tensor& sums = stat_sums_[key];
    if (!sums.defined()) sums = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device_));
    sums.index_add_(0, quartile, (value.detach() * weights).to(at::kDouble));
  }
  nonfinite_.logical_or_(at::isfinite(losses.at("loss").detach()).all().logical_not());
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
                  ", is intact). Try a lower --lr.");
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
  if (steps_since_dump_ > 0 && secs > 0) {
    logger_.logkv("steps_per_sec", steps_since_dump_ / secs);
    logger_.logkv(
        "images_per_sec",
        static_cast<double>(steps_since_dump_ * config_.batch_size * dist_->world_size()) / secs);
  }
  last_dump_time_ = now;
  steps_since_dump_ = 0;
  last_logged_ = logger_.dumpkvs();
}

TensorMap TrainLoop::params_to_state_dict(const std::vector<at::Tensor>& params) const {
  std::vector<at::Tensor> unflat = params;
  if (fp16_) unflat = unflatten_master_params(model_params_, params[0]);
  TensorMap sd;
  size_t i = 0;
  for (const auto& item : model_->named_parameters()) {
    sd.insert(item.key(), unflat.at(i++).detach().to(at::kCPU, at::kFloat).contiguous());
  }
  return sd;
}

void TrainLoop::save() {
  IDIFF_REQUIRE(!any_nonfinite_loss(), Error,
                "the loss became non-finite (NaN or inf) before step ", step_,
                dist_->world_size() > 1 ? " (on at least one rank)" : "",
                "; not saving over the last good checkpoint (step ",
                last_saved_step_ < 0 ? std::string("none") : std::to_string(last_saved_step_),
                "). Try a lower --lr.");
  // Every rank holds the same weights, so every rank comes to the same answer here.
  IDIFF_REQUIRE(
      all_finite(master_params_) && std::all_of(ema_params_.begin(), ema_params_.end(), all_finite),
      Error, "the weights became non-finite (NaN or inf) by step ", step_,
      "; not saving them as a checkpoint (the last good one: step ",
      last_saved_step_ < 0 ? std::string("none") : std::to_string(last_saved_step_),
      "). Try a lower --lr.");
  if (dist_->is_main()) {
    const std::string dir = logger_.dir();
    logger_.log("saving model " + dir + "/" + step_name("model", step_) + "...");
    save_tensor_file(dir + "/" + step_name("model", step_), params_to_state_dict(master_params_));
    for (size_t i = 0; i < ema_rates_.size(); ++i) {
      save_tensor_file(dir + "/" + ema_checkpoint_name(ema_rates_[i], step_),
                       params_to_state_dict(ema_params_[i]));
    }
    save_optimizer_file(dir + "/" + step_name("opt", step_), *opt_);
  }
  // No rank runs ahead of a checkpoint: when any returns, the files are complete.
  dist_->barrier();
  last_saved_step_ = step_;
}

}  // namespace idiff
