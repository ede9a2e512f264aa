// consistency_models' progressive distillation (--training_mode progdist; Salimans & Ho 2022
// with EDM's denoiser): cm/karras_diffusion.py progdist_losses, create_ema_and_scales_fn's
// progdist schedule and cm/train_util.py CMTrainLoop.reset_training_for_progdist. The model
// (EDM scalings, starting from its teacher's weights) learns to take in one Euler step what
// its teacher takes in two, over N + 1 Karras levels; N halves every
// --distill_steps_per_iter steps from --start_scales down to 2, then to 1 after twice as long.
// The first stage's teacher is the loaded network (EDM, or an improved-/guided-diffusion
// one through vp_denoiser, guided or not); when N halves, the teacher becomes a copy of the
// model as it is then, and the loop restarts its optimizer and EMAs from the model (the
// reference's reset). That copy is saved as teacher_modelNNNNNN.pt beside each checkpoint
// of a later stage and read back on resume, so a resumed run repeats a straight one.
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/logger.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/consistency_losses.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/train_checkpoint.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

class ProgdistObjective : public TrainingObjective {
 public:
  ProgdistObjective(const KarrasParams& params, const TrainConfig& train, UNetModel copy,
                    UNetModel teacher, TeacherDenoiser denoiser, TeacherNet net)
      : diffusion_(with_distillation(params, false)),
        copy_(std::move(copy)),
        teacher_(std::move(teacher)),
        teacher_denoiser_(std::move(denoiser)),
        teacher_net_(std::move(net)),
        copy_denoiser_(edm_teacher(params)),
        loss_norm_(train),
        schedule_(ema_scales_options(train)) {
    IDIFF_REQUIRE(train.scale_mode == "progdist" && train.target_ema_mode == "fixed", ConfigError,
                  "`training_mode` progdist halves its steps by `scale_mode` progdist with "
                  "`target_ema_mode` fixed, got ",
                  train.target_ema_mode, "/", train.scale_mode);
    IDIFF_REQUIRE(train.start_scales >= 2 && train.distill_steps_per_iter >= 1, ConfigError,
                  "`training_mode` progdist needs `start_scales` 2 or more and "
                  "`distill_steps_per_iter` 1 or more, got ",
                  train.start_scales, " and ", train.distill_steps_per_iter);
    if (!teacher_denoiser_) teacher_denoiser_ = edm_teacher(params);
    first_scales_ = scales_ = ema_and_scales(schedule_, 0).scales;
  }

  std::string name() const override { return "progdist"; }

  ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) override {
    return draw_level_indices(batch, images, scales_, name());
  }

  LossTerms losses(const ModelFn& model, const at::Tensor& x_start, const ObjectiveDraws& d,
                   int64_t i, int64_t len, const ModelKwargs& kwargs) override {
    const DenoiseFn teacher = copy_active_
                                  ? copy_denoiser_(network_fn(copy_, {}, kwargs))
                                  : teacher_denoiser_(network_fn(teacher_, teacher_net_, kwargs));
    const ConsistencyTerms terms =
        progdist_losses(diffusion_, model, teacher, x_start, scales_, d.t.narrow(0, i, len),
                        d.noise.narrow(0, i, len), loss_norm_.norm());
    return {{"loss", terms.loss}};
  }

  int64_t num_timesteps() const override { return scales_; }

  TensorMap file_layout(const TensorMap& state_dict) const override {
    return with_conv2d_attention(state_dict);
  }

  void start(const ObjectiveStart& s) override {
    loss_norm_.to(s.device);
    freeze_network(teacher_, s.device, false);
    freeze_network(copy_, s.device, false);
    copy_params_ = network_parameters(copy_);
    copy_active_ = ema_and_scales(schedule_, s.resume_step).scales != first_scales_;
    if (copy_active_ && s.dist.is_main()) {
      // A later stage's teacher is no file the user gave: the checkpoint's own.
      const std::string path = s.resume_dir + "/" + step_checkpoint_name(kCopyName, s.resume_step);
      IDIFF_REQUIRE(path_exists(path), FileError, path,
                    ": missing; resuming progressive distillation at step ", s.resume_step,
                    " needs the teacher of that stage (saved beside the model checkpoint)");
      s.logger.log("loading the stage's teacher from checkpoint: " + path + "...");
      load_state_dict(*copy_, load_tensor_file(path), path);
    }
    if (copy_active_) sync_params(s.dist, copy_params_);
    log_stage(s.logger, s.resume_step);
    logger_ = &s.logger;
  }

  void begin_step(int64_t step) override { scales_ = ema_and_scales(schedule_, step).scales; }

  bool end_step(int64_t step, const std::vector<at::Tensor>& params) override {
    if (ema_and_scales(schedule_, step + 1).scales == scales_) return false;
    // The next stage: its teacher is the model as it is now.
    const at::NoGradGuard no_grad;
    for (size_t i = 0; i < copy_params_.size(); ++i) copy_params_[i].copy_(params.at(i));
    copy_active_ = true;
    log_stage(*logger_, step + 1);
    return true;
  }

  std::vector<std::pair<std::string, TensorMap>> checkpoint_files() const override {
    if (!copy_active_) return {};
    return {{kCopyName, file_layout(float_state_dict(copy_))}};
  }

 private:
  static constexpr const char* kCopyName = "teacher_model";

  void log_stage(Logger& logger, int64_t step) const {
    const int64_t n = ema_and_scales(schedule_, step).scales;
    logger.log(str("progressive distillation, step ", step, ": ", n, " step", n == 1 ? "" : "s",
                   " learned from a teacher's ", 2 * n, " (",
                   copy_active_ ? "the model as the stage began" : "the loaded teacher", ")"));
  }

  KarrasDenoiser diffusion_;
  UNetModel copy_, teacher_;
  TeacherDenoiser teacher_denoiser_;
  TeacherNet teacher_net_;
  TeacherDenoiser copy_denoiser_;
  ObjectiveLossNorm loss_norm_;
  EmaScalesOptions schedule_;
  int64_t first_scales_ = 0, scales_ = 0;
  bool copy_active_ = false;  // this stage's teacher is copy_
  std::vector<at::Tensor> copy_params_;
  Logger* logger_ = nullptr;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_progdist_objective(const KarrasParams& params,
                                                           const TrainConfig& train, UNetModel copy,
                                                           UNetModel teacher,
                                                           TeacherDenoiser denoiser,
                                                           TeacherNet net) {
  return std::make_unique<ProgdistObjective>(params, train, std::move(copy), std::move(teacher),
                                             std::move(denoiser), std::move(net));
}

}  // namespace idiff
