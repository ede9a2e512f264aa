// GaussianDiffusion's single reverse steps (declared in gaussian_diffusion.h; reference:
// improved_diffusion/gaussian_diffusion.py, p_sample, ddim_sample, ddim_reverse_sample).
// A step's N(0, I) draw is made after the model call, where the reference makes it (DDIM
// included even with eta = 0), so a seeded CPU generator walks the reference's stream.
#include "idiff/diffusion/gaussian_diffusion.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace idiff {

namespace {

// [N] -> [N, 1, ...]: 1 where t > 0, 0 at the last step (no noise is added there).
at::Tensor nonzero_mask(const at::Tensor& t, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return (t != 0).to(x.scalar_type()).view(shape);
}

}  // namespace

SampleOutput GaussianDiffusion::p_sample_step(const ModelFn& model, const at::Tensor& x,
                                              const at::Tensor& t, bool clip_denoised,
                                              const DenoisedFn& denoised_fn,
                                              const std::function<at::Tensor()>& noise_fn,
                                              const CondFn& cond_fn) const {
  PMeanVariance out = p_mean_variance_unchecked(model, x, t, clip_denoised, denoised_fn);
  const at::Tensor noise = noise_fn();  // drawn after the model call, as in the reference
  // guided-diffusion's condition_mean: the mean moves by the variance times the gradient
  // (Dhariwal & Nichol 2021, Algorithm 1).
  if (cond_fn) out.mean = out.mean + out.variance * cond_fn(x, model_timesteps(t));
  // x_{t-1} = mu + sigma z (Ho et al. Algorithm 2, line 4).
  return {out.mean + nonzero_mask(t, x) * at::exp(0.5 * out.log_variance) * noise, out.pred_xstart};
}

SampleOutput GaussianDiffusion::p_sample_from_noise(const ModelFn& model, const at::Tensor& x,
                                                    const at::Tensor& t, const at::Tensor& noise,
                                                    bool clip_denoised,
                                                    const DenoisedFn& denoised_fn,
                                                    const CondFn& cond_fn) const {
  return p_sample_step(
      model, x, t, clip_denoised, denoised_fn, [&] { return noise; }, cond_fn);
}

SampleOutput GaussianDiffusion::p_sample_unchecked(
    const ModelFn& model, const at::Tensor& x, const at::Tensor& t, bool clip_denoised,
    const DenoisedFn& denoised_fn, const std::optional<at::Generator>& generator) const {
  return p_sample_step(model, x, t, clip_denoised, denoised_fn,
                       [&] { return draw_normal(x.sizes(), x.options(), generator); });
}

SampleOutput GaussianDiffusion::p_sample(const ModelFn& model, const at::Tensor& x,
                                         const at::Tensor& t, bool clip_denoised,
                                         const DenoisedFn& denoised_fn,
                                         const std::optional<at::Generator>& generator) const {
  check_timesteps(t, x.size(0), "p_sample");
  return p_sample_unchecked(model, x, t, clip_denoised, denoised_fn, generator);
}

SampleOutput GaussianDiffusion::ddim_sample_from_noise(const ModelFn& model, const at::Tensor& x,
                                                       const at::Tensor& t, const at::Tensor& noise,
                                                       bool clip_denoised,
                                                       const DenoisedFn& denoised_fn, double eta,
                                                       const CondFn& cond_fn) const {
  return ddim_step(
      model, x, t, clip_denoised, denoised_fn, eta, [&] { return noise; }, cond_fn);
}

SampleOutput GaussianDiffusion::ddim_sample_unchecked(
    const ModelFn& model, const at::Tensor& x, const at::Tensor& t, bool clip_denoised,
    const DenoisedFn& denoised_fn, double eta,
    const std::optional<at::Generator>& generator) const {
  return ddim_step(model, x, t, clip_denoised, denoised_fn, eta,
                   [&] { return draw_normal(x.sizes(), x.options(), generator); });
}

SampleOutput GaussianDiffusion::ddim_step(const ModelFn& model, const at::Tensor& x,
                                          const at::Tensor& t, bool clip_denoised,
                                          const DenoisedFn& denoised_fn, double eta,
                                          const std::function<at::Tensor()>& noise_fn,
                                          const CondFn& cond_fn) const {
  PMeanVariance out = p_mean_variance_unchecked(model, x, t, clip_denoised, denoised_fn);
  // Re-derive epsilon from x_0 whatever the model predicts (x_0 may have been clipped).
  at::Tensor eps = predict_eps_from_xstart(x, t, out.pred_xstart);
  const at::Tensor alpha_bar = extract(kAlphasCumprod, t, x);
  if (cond_fn) {
    // guided-diffusion's condition_score (Song et al. 2021's score shift): epsilon moves by
    // -sqrt(1 - alpha_bar) x gradient and x_0 follows, unclipped.
    eps = eps - at::sqrt(1 - alpha_bar) * cond_fn(x, model_timesteps(t));
    out.pred_xstart = predict_xstart_from_eps(x, t, eps);
  }
  const at::Tensor alpha_bar_prev = extract(kAlphasCumprodPrev, t, x);
  // Song et al. eq. 16: sigma_t = eta sqrt((1 - a_{t-1}) / (1 - a_t)) sqrt(1 - a_t / a_{t-1}).
  const at::Tensor sigma = eta * at::sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) *
                           at::sqrt(1 - alpha_bar / alpha_bar_prev);
  const at::Tensor noise = noise_fn();  // drawn after the model call, as in the reference
  // Song et al. eq. 12: x_{t-1} = sqrt(a_{t-1}) x_0 + sqrt(1 - a_{t-1} - sigma^2) eps + sigma z.
  const at::Tensor mean_pred = out.pred_xstart * at::sqrt(alpha_bar_prev) +
                               at::sqrt(1 - alpha_bar_prev - sigma.pow(2)) * eps;
  return {mean_pred + nonzero_mask(t, x) * sigma * noise, out.pred_xstart};
}

SampleOutput GaussianDiffusion::ddim_sample(const ModelFn& model, const at::Tensor& x,
                                            const at::Tensor& t, bool clip_denoised,
                                            const DenoisedFn& denoised_fn, double eta,
                                            const std::optional<at::Generator>& generator) const {
  check_timesteps(t, x.size(0), "ddim_sample");
  IDIFF_REQUIRE(eta >= 0.0, ConfigError, "DDIM eta must be >= 0, got ", eta);
  return ddim_sample_unchecked(model, x, t, clip_denoised, denoised_fn, eta, generator);
}

SampleOutput GaussianDiffusion::ddim_reverse_sample(const ModelFn& model, const at::Tensor& x,
                                                    const at::Tensor& t, bool clip_denoised,
                                                    const DenoisedFn& denoised_fn) const {
  check_timesteps(t, x.size(0), "ddim_reverse_sample");
  const PMeanVariance out = p_mean_variance_unchecked(model, x, t, clip_denoised, denoised_fn);
  const at::Tensor eps = predict_eps_from_xstart(x, t, out.pred_xstart);
  const at::Tensor alpha_bar_next = extract(kAlphasCumprodNext, t, x);
  // Song et al. eq. 12 reversed, sigma = 0: x_{t+1} = sqrt(a_{t+1}) x_0 + sqrt(1 - a_{t+1}) eps.
  return {out.pred_xstart * at::sqrt(alpha_bar_next) + at::sqrt(1 - alpha_bar_next) * eps,
          out.pred_xstart};
}

}  // namespace idiff
