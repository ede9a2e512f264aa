// What a training step minimises: a strategy the TrainLoop is given, one row of a registry
// per objective (`--training_mode`). The loop owns everything else (microbatches, gradient
// averaging over the ranks, the optimizer, EMA, fp16, logging, checkpoints); an objective
// draws what a batch's microbatches share and returns each sample's loss terms.
//
// Rows: improved_diffusion (improved_diffusion/gaussian_diffusion.py training_losses: the
// hybrid, KL or MSE loss the diffusion flags choose, at timesteps from --schedule_sampler).
// The EDM and consistency objectives are added as rows of their own.
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/resample.h"
#include "idiff/model/unet.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace idiff {

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
};

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual std::string name() const = 0;
  // The draws for `images` (the batch on the training device); batch.timesteps and
  // batch.noise when given.
  virtual ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) = 0;
  // The loss terms ("loss", minimised, and what else is logged), each [len], of the
  // samples [i, i + len) of the batch, x_start being those samples.
  virtual LossTerms losses(const ModelFn& model, const at::Tensor& x_start,
                           const ObjectiveDraws& draws, int64_t i, int64_t len) = 0;
  // Whether observe() wants every rank's t and losses after each step (a gather).
  virtual bool observes() const { return false; }
  virtual void observe(const at::Tensor& t, const at::Tensor& losses) {}
  // The range of ObjectiveDraws::t.
  virtual int64_t num_timesteps() const = 0;
};

// improved-diffusion's objective over `diffusion` with timesteps from `sampler`.
std::unique_ptr<TrainingObjective> make_diffusion_objective(
    const GaussianDiffusion& diffusion, std::unique_ptr<ScheduleSampler> sampler);

// The timestep sampler of an improved_diffusion objective (nullptr for other objectives).
const ScheduleSampler* schedule_sampler_of(const TrainingObjective& objective);

// What a factory of the registry may use.
struct ObjectiveContext {
  const GaussianDiffusion& diffusion;
  const TrainConfig& train;
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
