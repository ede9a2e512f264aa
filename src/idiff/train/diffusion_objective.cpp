// improved-diffusion's training objective (gaussian_diffusion.py training_losses, with the
// timestep sampler of resample.py): the hybrid, KL or MSE loss the diffusion's flags chose,
// at timesteps drawn by the schedule sampler and weighted by 1 / (T p_t).
#include "idiff/common/error.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

// The loss weights 1 / (T p_t) of given timesteps (as ScheduleSampler::sample gives them).
at::Tensor weights_for(const ScheduleSampler& sampler, const at::Tensor& t) {
  const at::Tensor probs = at::tensor(sampler.probabilities(), at::kDouble);
  const at::Tensor w = 1.0 / (static_cast<double>(probs.size(0)) * probs.index_select(0, t.cpu()));
  return w.to(at::kFloat).to(t.device());
}

class DiffusionObjective : public TrainingObjective {
 public:
  DiffusionObjective(const GaussianDiffusion& diffusion, std::unique_ptr<ScheduleSampler> sampler)
      : diffusion_(diffusion), sampler_(std::move(sampler)) {}

  std::string name() const override { return "improved_diffusion"; }

  ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) override {
    const int64_t n = images.size(0);
    ObjectiveDraws d;
    if (batch.timesteps.defined()) {
      IDIFF_REQUIRE(batch.timesteps.sizes() == at::IntArrayRef{n}, Error,
                    "the batch's timesteps have shape ", batch.timesteps.sizes(), ", expected [", n,
                    "]");
      d.t = batch.timesteps.to(images.device(), at::kLong);
      d.weights = weights_for(*sampler_, d.t);
    } else {
      std::tie(d.t, d.weights) = sampler_->sample(n, images.device());
    }
    d.noise = batch_noise(batch, images);
    return d;
  }

  LossTerms losses(const ModelFn& model, const at::Tensor& x_start, const ObjectiveDraws& d,
                   int64_t i, int64_t len, const ModelKwargs&) override {
    return diffusion_.training_losses(model, x_start, d.t.narrow(0, i, len),
                                      d.noise.narrow(0, i, len));
  }

  bool observes() const override {
    return dynamic_cast<const LossAwareSampler*>(sampler_.get()) != nullptr;
  }
  void observe(const at::Tensor& t, const at::Tensor& losses) override {
    if (auto* aware = dynamic_cast<LossAwareSampler*>(sampler_.get())) {
      aware->update_with_all_losses(t, losses);
    }
  }

  int64_t num_timesteps() const override { return diffusion_.num_timesteps(); }

  const ScheduleSampler& sampler() const { return *sampler_; }

 private:
  const GaussianDiffusion& diffusion_;
  std::unique_ptr<ScheduleSampler> sampler_;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_diffusion_objective(
    const GaussianDiffusion& diffusion, std::unique_ptr<ScheduleSampler> sampler) {
  return std::make_unique<DiffusionObjective>(diffusion, std::move(sampler));
}

const ScheduleSampler* schedule_sampler_of(const TrainingObjective& objective) {
  const auto* d = dynamic_cast<const DiffusionObjective*>(&objective);
  return d == nullptr ? nullptr : &d->sampler();
}

at::Tensor batch_noise(const TrainBatch& batch, const at::Tensor& images) {
  const at::Tensor noise = batch.noise.defined()
                               ? batch.noise.to(images.device(), images.scalar_type())
                               : at::randn_like(images);
  IDIFF_REQUIRE(noise.sizes() == images.sizes(), Error, "the batch's noise has shape ",
                noise.sizes(), ", expected ", images.sizes());
  return noise;
}

}  // namespace idiff
