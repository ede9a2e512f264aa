// What a training step minimises: a strategy the TrainLoop is given, one row of a registry
// per objective (`--training_mode`). The loop owns everything else (microbatches, gradient
// averaging over the ranks, the optimizer, EMA, fp16, logging, checkpoints); an objective
// draws what a batch's microbatches share and returns each sample's loss terms.
//
// Rows: improved_diffusion (improved_diffusion/gaussian_diffusion.py training_losses: the
// hybrid, KL or MSE loss the diffusion flags choose, at timesteps from --schedule_sampler);
// edm (consistency_models' KarrasDenoiser.training_losses at lognormal noise levels,
// scripts/edm_train.py); consistency_distillation and consistency_training (its
// consistency_losses with a target network and a frozen teacher, scripts/cm_train.py);
// progdist (its progdist_losses: progressive distillation, halving the teacher's steps).
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/consistency_losses.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/resample.h"
#include "idiff/io/tensor_map.h"
#include "idiff/model/lpips.h"
#include "idiff/model/unet.h"

#include <ATen/core/Tensor.h>

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace idiff {

class DistContext;
class Logger;

// One batch: images [N, C, H, W] in [-1, 1] and the model's conditioning.
struct TrainBatch {
  at::Tensor images;
  ModelKwargs kwargs;
  // Optional, to reproduce another run's draws exactly (a data-parallel run against one
  // process trained on the concatenated batch): the timesteps [N] (int64) and the noise
  // [N, C, H, W] to use instead of drawing them. The loss weights are the sampler's
  // 1 / (T p_t) for these timesteps.
  at::Tensor timesteps;
  at::Tensor noise;
};

// What a batch's microbatches share, drawn once per step, on the batch's device.
struct ObjectiveDraws {
  at::Tensor t;        // [N] int64 in [0, num_timesteps()): the per-quarter statistics
  at::Tensor weights;  // [N] each sample's loss weight
  at::Tensor noise;    // like the images
  at::Tensor sigmas;   // [N] Karras objectives: each sample's noise level (else undefined)
};

// What TrainingObjective::start is given.
struct ObjectiveStart {
  const std::vector<at::Tensor>& params;  // the model's parameters, as named_parameters
  std::string resume_dir;                 // the resumed checkpoint's folder ("": a new run)
  int64_t resume_step = 0;
  DistContext& dist;
  Logger& logger;
  c10::Device device;
};

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual std::string name() const = 0;
  // The draws for `images` (the batch on the training device); batch.timesteps and
  // batch.noise when given.
  virtual ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) = 0;
  // The loss terms ("loss", minimised, and what else is logged), each [len], of the
  // samples [i, i + len) of the batch, x_start being those samples and kwargs their
  // conditioning (which `model` already holds; networks of the objective's own take it).
  virtual LossTerms losses(const ModelFn& model, const at::Tensor& x_start,
                           const ObjectiveDraws& draws, int64_t i, int64_t len,
                           const ModelKwargs& kwargs) = 0;
  // Whether observe() wants every rank's t and losses after each step (a gather).
  virtual bool observes() const { return false; }
  virtual void observe(const at::Tensor& t, const at::Tensor& losses) {}
  // The range of ObjectiveDraws::t.
  virtual int64_t num_timesteps() const = 0;
  // The model's state dict as the family's reference stores it (checkpoints are written
  // so): as it is, or consistency_models' 1x1 Conv2d attention weights.
  virtual TensorMap file_layout(const TensorMap& state_dict) const { return state_dict; }

  // Objectives that keep networks of their own (consistency models' target network):
  // start() is called once, when the model's parameters (`params`, float32, in
  // named_parameters order) are loaded and the same on every rank; begin_step() before each
  // step's draws with the number of completed steps; end_step() after each optimizer
  // update, returning true when the optimizer's state and the EMAs are to start again from
  // the parameters now (progressive distillation's next stage); checkpoint_files() the
  // files saved beside the model's, as {name prefix, state dict in the file layout} (prefix
  // "target_model" -> target_model012345.pt).
  virtual void start(const ObjectiveStart& start) {}
  virtual void begin_step(int64_t step) {}
  virtual bool end_step(int64_t step, const std::vector<at::Tensor>& params) { return false; }
  virtual std::vector<std::pair<std::string, TensorMap>> checkpoint_files() const { return {}; }
};

// The noise of a batch for every objective: batch.noise when given (its shape checked),
// else N(0, I) like the images.
at::Tensor batch_noise(const TrainBatch& batch, const at::Tensor& images);

// improved-diffusion's objective over `diffusion` with timesteps from `sampler`.
std::unique_ptr<TrainingObjective> make_diffusion_objective(
    const GaussianDiffusion& diffusion, std::unique_ptr<ScheduleSampler> sampler);

// The timestep sampler of an improved_diffusion objective (nullptr for other objectives).
const ScheduleSampler* schedule_sampler_of(const TrainingObjective& objective);

// consistency_models' EDM objective (edm_objective.cpp): KarrasDenoiser.training_losses at
// sigmas exp(N(p_mean, p_std^2)) (its LogNormalSampler, -1.2 and 1.2), weights 1; the
// per-quarter statistics bucket log sigma over [sigma_min, sigma_max].
std::unique_ptr<TrainingObjective> make_edm_objective(const KarrasParams& params,
                                                      double p_mean = -1.2, double p_std = 1.2);

// How a distillation teacher's network (its conditioning bound) becomes a denoiser of sigma
// levels: an EDM network through the Karras scalings, an improved-/guided-diffusion one by
// vp_denoiser (consistency_losses.h).
using TeacherDenoiser = std::function<DenoiseFn(const ModelFn& net)>;
// How the teacher's network is called with a batch's conditioning: classifier-free guided
// at cm-train's --guidance_scale (drivers/guided_models.h); empty: teacher->forward_kwargs.
using TeacherNet = std::function<ModelFn(const ModelKwargs& kwargs)>;

// consistency_models' consistency distillation (with `teacher`) or consistency training
// (teacher empty) objective (consistency_objective.cpp): consistency_losses at indices drawn
// uniformly in [0, N - 1) for the N scales of ema_and_scales(step), the target network an
// EMA of the model at its rate. `target`: a network of the model's architecture (its
// weights are set by start()). `denoiser`: the teacher's (empty: an EDM teacher of `params`);
// `net`: how the teacher is called (empty: plainly).
std::unique_ptr<TrainingObjective> make_consistency_objective(const KarrasParams& params,
                                                              const TrainConfig& train,
                                                              UNetModel target, UNetModel teacher,
                                                              TeacherDenoiser denoiser = {},
                                                              TeacherNet net = {});

// --loss_norm as the Karras distillation objectives use it, with, for lpips, its network
// from --lpips_vgg16 and --lpips_weights (a ConfigError when they are missing, or given with
// another norm).
class ObjectiveLossNorm {
 public:
  explicit ObjectiveLossNorm(const TrainConfig& train);
  // Moves the LPIPS network to the training device (an objective's start()).
  void to(c10::Device device);
  const LossNorm& norm() const { return norm_; }

 private:
  LossNorm norm_;
  std::optional<Lpips> lpips_;  // lpips: the network, until to() binds it into norm_
};

// The draws of the Karras distillation objectives: level indices uniform in [0, count) as
// `t`, weights 1, the batch's noise (an Error naming `objective` when the batch brings
// timesteps).
ObjectiveDraws draw_level_indices(const TrainBatch& batch, const at::Tensor& images, int64_t count,
                                  const std::string& objective);

// A network of an objective's own that is not trained: on `device`, no gradients, in eval
// mode, or in train mode (dropout as the model's) with `dropout`.
void freeze_network(UNetModel& net, c10::Device device, bool dropout);
// Its parameters, in named_parameters order.
std::vector<at::Tensor> network_parameters(const UNetModel& net);
// Its parameters as a float32 state dict on the CPU (a checkpoint file's content).
TensorMap float_state_dict(const UNetModel& net);
// `params` with its consistency flag set: the boundary-condition scalings (true) or EDM's.
KarrasParams with_distillation(KarrasParams params, bool distillation);
// The schedule flags of create_ema_and_scales_fn.
EmaScalesOptions ema_scales_options(const TrainConfig& train);
// An EDM network as a denoiser (the Karras denoiser with EDM's scalings).
TeacherDenoiser edm_teacher(const KarrasParams& params);
// The teacher `net` called with a batch's `kwargs`: by `how` when given, else plainly.
ModelFn network_fn(const UNetModel& net, const TeacherNet& how, const ModelKwargs& kwargs);

// consistency_models' progressive distillation (progdist_objective.cpp): progdist_losses at
// indices drawn uniformly in [0, N) for the N scales of ema_and_scales(step) (--scale_mode
// progdist); the first stage's teacher is `teacher` (through `denoiser`, `net` as for
// consistency distillation), each later stage's a copy of the model as the stage began (a
// network of the model's architecture, `copy`), and the loop restarts its optimizer and
// EMAs at each stage.
std::unique_ptr<TrainingObjective> make_progdist_objective(const KarrasParams& params,
                                                           const TrainConfig& train, UNetModel copy,
                                                           UNetModel teacher,
                                                           TeacherDenoiser denoiser = {},
                                                           TeacherNet net = {});

// What a factory of the registry may use.
struct ObjectiveContext {
  const GaussianDiffusion& diffusion;
  const TrainConfig& train;
  const DiffusionConfig& config;     // the flags `diffusion` was made from (and the Karras ones)
  const ModelConfig& model;          // the model's flags (family_model_config applied)
  UNetModel teacher{nullptr};        // consistency distillation: the loaded teacher
  TeacherDenoiser teacher_denoiser;  // and how it denoises (empty: an EDM network)
  TeacherNet teacher_net;            // and how it is called (empty: plainly)
};

struct ObjectiveRow {
  const char* name;  // --training_mode
  const char* help;  // one line
  std::unique_ptr<TrainingObjective> (*make)(const ObjectiveContext& context);
};

const std::vector<ObjectiveRow>& objective_registry();
// The row of `name`; a ConfigError naming `training_mode` and listing the names otherwise.
const ObjectiveRow& find_objective(const std::string& name);
std::string objective_names();

}  // namespace idiff
