// consistency_models' EDM training objective (scripts/edm_train.py with
// cm/karras_diffusion.py training_losses and cm/resample.py LogNormalSampler; Karras et al.
// 2022, sec. 5): noise levels log sigma ~ N(p_mean, p_std^2), x_t = x_0 + sigma z, the loss
// the weighted squared error of the denoiser D(x_t, sigma), weights 1 per sample.
#include "idiff/common/error.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

#include <cmath>

namespace idiff {
namespace {

// The bins of the per-quarter statistics: log sigma over [sigma_min, sigma_max].
constexpr int64_t kBins = 1000;

class EdmObjective : public TrainingObjective {
 public:
  EdmObjective(const KarrasParams& params, double p_mean, double p_std)
      : karras_(params), p_mean_(p_mean), p_std_(p_std) {}

  std::string name() const override { return "edm"; }

  ObjectiveDraws draw(const TrainBatch& batch, const at::Tensor& images) override {
    IDIFF_REQUIRE(!batch.timesteps.defined(), Error,
                  "the edm objective draws noise levels, not timesteps");
    const int64_t n = images.size(0);
    ObjectiveDraws d;
    // Drawn on the CPU (the reference's th.randn(bs)), then moved.
    d.sigmas = at::exp(p_mean_ + p_std_ * at::randn({n}, at::kFloat)).to(images.device());
    d.weights = at::ones({n}, images.options().dtype(at::kFloat));
    d.noise = batch_noise(batch, images);
    const KarrasParams& p = karras_.params();
    const double lo = std::log(p.sigma_min), hi = std::log(p.sigma_max);
    d.t = ((d.sigmas.log() - lo) / (hi - lo) * kBins).clamp(0, kBins - 1).to(at::kLong);
    return d;
  }

  LossTerms losses(const ModelFn& model, const at::Tensor& x_start, const ObjectiveDraws& d,
                   int64_t i, int64_t len, const ModelKwargs&) override {
    return karras_.training_losses(model, x_start, d.sigmas.narrow(0, i, len),
                                   d.noise.narrow(0, i, len));
  }

  int64_t num_timesteps() const override { return kBins; }

  TensorMap file_layout(const TensorMap& state_dict) const override {
    return with_conv2d_attention(state_dict);
  }

 private:
  KarrasDenoiser karras_;
  double p_mean_, p_std_;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_edm_objective(const KarrasParams& params, double p_mean,
                                                      double p_std) {
  return std::make_unique<EdmObjective>(params, p_mean, p_std);
}

}  // namespace idiff
