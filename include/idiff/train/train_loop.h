// The training loop (reference: improved_diffusion/train_util.py TrainLoop): AdamW (or
// consistency_models' RAdam, --optimizer) with linear lr annealing, microbatches, EMA for
// each --ema_rate, the timestep sampler fed with per-sample losses, fp16 with dynamic loss
// scaling (or bf16 autocast on CUDA), logging every --log_interval steps
// (log_loss_dict.cpp), checkpoints every --save_interval steps in the reference's names and
// format, and resume (train_checkpoint.cpp), and a clean stop when the caller asks (a
// StopCheck).
//
// Data-parallel over the ranks of a DistContext, as the reference with
// DistributedDataParallel: parameters and EMA come from rank 0 at the start (after a
// resume, which only rank 0 reads), each rank trains on its own batch with its own
// timesteps and noise (seeded by seed, step and rank), the gradients are averaged over
// the ranks once per step (overlapped with the last microbatch's backward), the
// loss-aware sampler sees every rank's losses, logged statistics are averaged over the
// ranks, and only rank 0 writes logs and checkpoints. Every decision that ends or skips
// a step (non-finite loss, fp16 overflow, a stop signal, --max_minutes) is taken on
// reduced values, so the ranks always agree.
//
// Step numbering: a checkpoint named NNNNNN holds the state after NNNNNN optimizer steps,
// and resuming from it continues with step NNNNNN + 1. (The reference names its first
// checkpoint model000000.pt although one step was taken; idiff counts completed steps.)
#pragma once

#include "idiff/common/logger.h"
#include "idiff/config.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/resample.h"
#include "idiff/io/tensor_map.h"
#include "idiff/model/unet.h"
#include "idiff/train/adamw.h"
#include "idiff/train/train_checkpoint.h"
#include "idiff/train/training_objective.h"

#include <c10/core/Device.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace idiff {

class DistContext;
class GradReducer;

// Produces the next batch for `step` (the number of completed steps), so a resumed run
// sees the data a straight run would have seen.
using BatchFn = std::function<TrainBatch(int64_t step)>;

// Why run_loop returned.
enum class StopReason { Finished, MaxSteps, MaxMinutes, Signal };

// Asked after every step and while the data is late: a non-empty answer (why, e.g.
// "SIGINT") stops the run after the current step, saved, as --max_steps would. The
// library installs no signal handler; the idiff program passes one that reads its own
// SIGINT/SIGTERM handlers.
using StopCheck = std::function<std::string()>;

class TrainLoop {
 public:
  // `dist`: the ranks to train with (nullptr: this process alone). Every rank must
  // construct its loop with the same settings; the constructor already communicates.
  // `objective`: what a step minimises (training_objective.h).
  TrainLoop(UNetModel model, std::unique_ptr<TrainingObjective> objective, BatchFn data,
            const TrainConfig& config, Logger& logger, c10::Device device,
            DistContext* dist = nullptr);
  // improved-diffusion's objective over `diffusion` with timesteps from `sampler`.
  TrainLoop(UNetModel model, const GaussianDiffusion& diffusion,
            std::unique_ptr<ScheduleSampler> sampler, BatchFn data, const TrainConfig& config,
            Logger& logger, c10::Device device, DistContext* dist = nullptr);
  ~TrainLoop();

  // Trains until --lr_anneal_steps / --max_steps / --max_minutes or a stop signal (to
  // any rank), saves the final checkpoint and says why it stopped. Throws idiff::Error
  // when the loss becomes non-finite (on any rank; the last good checkpoint stays as it
  // was) or when another rank fails.
  StopReason run_loop();
  // One optimizer step on one batch (forward/backward over the microbatches, gradients
  // averaged over the ranks, update, EMA). Collective: every rank calls it.
  void run_step(const TrainBatch& batch);
  // Rank 0 writes model/ema/opt files for the current step into the log directory; the
  // others wait until it has. Collective.
  void save();
  // Writes the statistics accumulated since the last dump, averaged over the ranks, to
  // the logs (rank 0's logger). Collective.
  void dump_logs();

  // Checked after every step (nothing asked by default).
  void set_stop_check(StopCheck check) { stop_check_ = std::move(check); }

  int64_t step() const { return step_; }  // completed optimizer steps, resumed ones included
  const std::vector<at::Tensor>& master_params() const { return master_params_; }
  const std::vector<std::vector<at::Tensor>>& ema_params() const { return ema_params_; }
  const std::vector<double>& ema_rates() const { return ema_rates_; }
  double lg_loss_scale() const { return lg_loss_scale_; }
  const UNetModel& model() const { return model_; }
  AdamW& optimizer() { return *opt_; }
  const TrainingObjective& objective() const { return *objective_; }
  // The improved_diffusion objective's timestep sampler (an Error for other objectives).
  const ScheduleSampler& schedule_sampler() const;
  const DistContext& dist() const { return *dist_; }
  // The values written at the last log dump (loss, mse, grad_norm, ...).
  const std::map<std::string, double>& last_logged() const { return last_logged_; }

  // The state dict of the model with `params` (master layout) as its parameters, float32.
  TensorMap params_to_state_dict(const std::vector<at::Tensor>& params) const;

 private:
  friend struct TrainLoopTesting;  // tests set the fp16 loss scale (tests/test_train.cpp)

  void load_and_sync_parameters();
  void load_ema(double rate, std::vector<at::Tensor>& ema);
  void load_and_sync_optimizer();
  // True when the loss was non-finite on some rank at some step so far. Collective.
  bool any_nonfinite_loss();
  // Whether (and why) the ranks stop after this step: a stop signal to any rank, or
  // --max_minutes on rank 0's clock; the same answer on every rank. Collective when
  // there are several ranks.
  std::optional<StopReason> agreed_stop();
  void forward_backward(const TrainBatch& batch);
  // AdamW over the master parameters at --lr and --weight_decay, with no state yet.
  std::unique_ptr<AdamW> make_optimizer() const;
  // After an objective's end_step asked for it: a fresh optimizer, every EMA = the model.
  void restart_optimizer_and_ema();
  bool optimize_fp16();
  void optimize_normal();
  void anneal_lr();
  void accumulate_stats(const at::Tensor& t, const std::map<std::string, at::Tensor>& losses,
                        const at::Tensor& weights);
  // "step 1200/5000, 410.3 images/s, 2m13s left": logged after every dump, the line a person
  // watches (the table above it is the reference's log).
  std::string progress_line(double steps_per_sec, double images_per_sec) const;

  UNetModel model_;
  std::unique_ptr<TrainingObjective> objective_;
  BatchFn data_;
  TrainConfig config_;
  Logger& logger_;
  c10::Device device_;
  std::unique_ptr<DistContext> own_dist_;  // a single-process context when none was given
  DistContext* dist_;
  std::unique_ptr<GradReducer> reducer_;
  StopCheck stop_check_;

  int64_t microbatch_ = 0;
  std::vector<double> ema_rates_;
  std::vector<at::Tensor> model_params_;   // the model's own parameters
  std::vector<at::Tensor> master_params_;  // what the optimizer updates (flat in fp16)
  std::vector<std::vector<at::Tensor>> ema_params_;
  std::unique_ptr<AdamW> opt_;
  bool fp16_ = false, bf16_ = false;
  double lg_loss_scale_ = 20.0;  // the reference's INITIAL_LOG_LOSS_SCALE
  int64_t step_ = 0;
  int64_t resume_step_ = 0;
  int64_t last_saved_step_ = -1;
  std::chrono::steady_clock::time_point start_time_;
  bool run_started_ = false;  // run_loop set start_time_

  // Loss statistics accumulated on the device between dumps (no per-step host sync).
  std::map<std::string, at::Tensor> stat_sums_;  // key -> [4] per-quartile sums
  at::Tensor stat_counts_;                       // [4] samples per quartile
  at::Tensor grad_norm_sum_, nonfinite_;         // scalars
  int64_t grad_norm_count_ = 0;
  int64_t steps_since_dump_ = 0;
  std::map<std::string, double> last_logged_;
  std::chrono::steady_clock::time_point last_dump_time_;
};

}  // namespace idiff
