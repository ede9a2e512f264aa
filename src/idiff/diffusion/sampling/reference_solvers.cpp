// The reference's samplers as solvers of the one loop: p_sample (Ho et al. 2020, Alg. 2)
// and ddim_sample (Song et al. 2021) of a GaussianDiffusion, the same calls as the
// reference's p_sample_loop / ddim_sample_loop make, step for step, so their results are
// unchanged (including the learned variances of ancestral sampling and the reference's
// clipping). Like the reference they take an N(0, I) draw at every step, DDIM with eta = 0
// included, so a seed walks the same random stream.
#include "idiff/diffusion/sampling/solver.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

// Row: [t], the step of `diffusion` (T-1 down to 0) as a float.
class ReferenceSolver : public Solver {
 public:
  ReferenceSolver(const GaussianDiffusion& diffusion, ModelFn model, bool ddim, double eta,
                  bool clip_denoised, DenoisedFn denoised_fn, CondFn cond_fn)
      : Solver(levels_of(diffusion)),
        diffusion_(diffusion),
        model_(std::move(model)),
        ddim_(ddim),
        eta_(eta),
        clip_(clip_denoised),
        denoised_fn_(std::move(denoised_fn)),
        cond_fn_(std::move(cond_fn)) {
    IDIFF_REQUIRE(eta >= 0.0, ConfigError, "DDIM eta must be >= 0, got ", eta);
  }

  std::string name() const override { return ddim_ ? "ddim" : "ddpm"; }
  bool draws_noise() const override { return true; }

  at::Tensor coefficients() const override {
    const int64_t n = num_steps();
    return at::arange(n - 1, -1, -1, at::kDouble).unsqueeze(1);
  }

  SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                    int64_t) override {
    const at::Tensor t = row[0].to(at::kLong).expand({x.size(0)});
    return ddim_
               ? diffusion_.ddim_sample_from_noise(model_, x, t, noise, clip_, denoised_fn_, eta_,
                                                   cond_fn_)
               : diffusion_.p_sample_from_noise(model_, x, t, noise, clip_, denoised_fn_, cond_fn_);
  }

 private:
  // The original steps behind the diffusion's own, then the clean end.
  static StepSchedule levels_of(const GaussianDiffusion& d) {
    StepSchedule s;
    for (auto it = d.timestep_map().rbegin(); it != d.timestep_map().rend(); ++it) {
      s.levels.push_back(static_cast<double>(*it));
    }
    s.levels.push_back(kCleanLevel);
    return s;
  }

  GaussianDiffusion diffusion_;
  ModelFn model_;
  bool ddim_;
  double eta_;
  bool clip_;
  DenoisedFn denoised_fn_;
  CondFn cond_fn_;
};

}  // namespace

std::unique_ptr<Solver> make_reference_solver(const GaussianDiffusion& diffusion,
                                              const ModelFn& model, bool ddim, double eta,
                                              bool clip_denoised, const DenoisedFn& denoised_fn,
                                              const CondFn& cond_fn) {
  return std::make_unique<ReferenceSolver>(diffusion, model, ddim, eta, clip_denoised, denoised_fn,
                                           cond_fn);
}

}  // namespace idiff
