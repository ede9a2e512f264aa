// consistency_models' consistency distillation and consistency training objectives
// (cm/train_util.py CMTrainLoop with cm/karras_diffusion.py consistency_losses; Song et al.
// 2023, Alg. 2 and 3). Beside the model the objective keeps its target network, an EMA of
// the model at the rate of create_ema_and_scales_fn (updated after every optimizer step,
// saved as target_modelNNNNNN.pt and read back on resume), and for distillation the frozen
// teacher (an EDM network, in eval mode). Each step draws indices n uniformly in
// [0, N - 1) for the N scales of that step.
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/logger.h"
#include "idiff/diffusion/consistency_losses.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/ema.h"
#include "idiff/train/train_checkpoint.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

class ConsistencyObjective : public TrainingObjective {
 public:
  ConsistencyObjective(const KarrasParams& params, const TrainConfig& train, UNetModel target,
                       UNetModel teacher, TeacherDenoiser denoiser, TeacherNet net)
      : diffusion_(with_distillation(params, true)),
        target_(std::move(target)),
        teacher_(std::move(teacher)),
        teacher_denoiser_(std::move(denoiser)),
        teacher_net_(std::move(net)),
        loss_norm_(train),
        schedule_(ema_scales_options(train)) {
    IDIFF_REQUIRE(train.scale_mode != "progdist", ConfigError,
                  "`scale_mode` progdist is progressive distillation's schedule (`training_mode` "
                  "progdist), not ",
                  name(), "'s");
    if (teacher_ && !teacher_denoiser_) teacher_denoiser_ = edm_teacher(params);
    scales_ = ema_and_scales(schedule_, 0).scales;  // checks the combination of modes
  }

  std::string name() const override {
    return teacher_ ? "consistency_distillation" : "consistency_training";
  }

  ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) override {
    return draw_level_indices(batch, images, scales_ - 1, name());
  }

  LossTerms losses(const ModelFn& model, const at::Tensor& x_start, const ObjectiveDraws& d,
                   int64_t i, int64_t len, const ModelKwargs& kwargs) override {
    const ModelFn target = network_fn(target_, {}, kwargs);
    const DenoiseFn teacher =
        teacher_ ? teacher_denoiser_(network_fn(teacher_, teacher_net_, kwargs)) : DenoiseFn();
    const ConsistencyTerms terms =
        consistency_losses(diffusion_, model, target, teacher, x_start, scales_,
                           d.t.narrow(0, i, len), d.noise.narrow(0, i, len), loss_norm_.norm());
    return {{"loss", terms.loss}};
  }

  int64_t num_timesteps() const override { return scales_ - 1; }

  TensorMap file_layout(const TensorMap& state_dict) const override {
    return with_conv2d_attention(state_dict);
  }

  void start(const ObjectiveStart& s) override {
    loss_norm_.to(s.device);
    freeze_network(target_, s.device, true);  // the reference's target_model.train()
    if (teacher_) freeze_network(teacher_, s.device, false);
    target_params_ = network_parameters(target_);
    {
      const at::NoGradGuard no_grad;
      for (size_t i = 0; i < target_params_.size(); ++i) target_params_[i].copy_(s.params.at(i));
    }
    if (!s.resume_dir.empty() && s.dist.is_main()) {
      const std::string path =
          s.resume_dir + "/" + step_checkpoint_name("target_model", s.resume_step);
      if (path_exists(path)) {
        s.logger.log("loading target model from checkpoint: " + path + "...");
        load_state_dict(*target_, load_tensor_file(path), path);
      } else {
        s.logger.warn("no target model checkpoint " + path +
                      ": the target network restarts from the model weights");
      }
    }
    sync_params(s.dist, target_params_);
  }

  void begin_step(int64_t step) override { scales_ = ema_and_scales(schedule_, step).scales; }

  bool end_step(int64_t step, const std::vector<at::Tensor>& params) override {
    update_ema(target_params_, params, ema_and_scales(schedule_, step).target_ema);
    return false;
  }

  std::vector<std::pair<std::string, TensorMap>> checkpoint_files() const override {
    return {{"target_model", file_layout(float_state_dict(target_))}};
  }

 private:
  KarrasDenoiser diffusion_;
  UNetModel target_, teacher_;
  TeacherDenoiser teacher_denoiser_;
  TeacherNet teacher_net_;
  ObjectiveLossNorm loss_norm_;
  EmaScalesOptions schedule_;
  int64_t scales_ = 0;
  std::vector<at::Tensor> target_params_;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_consistency_objective(const KarrasParams& params,
                                                              const TrainConfig& train,
                                                              UNetModel target, UNetModel teacher,
                                                              TeacherDenoiser denoiser,
                                                              TeacherNet net) {
  return std::make_unique<ConsistencyObjective>(
      params, train, std::move(target), std::move(teacher), std::move(denoiser), std::move(net));
}

}  // namespace idiff
