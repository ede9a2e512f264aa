// GaussianDiffusion's training objectives and variational bound in bits/dim (members
// declared in gaussian_diffusion.h; reference: improved_diffusion/gaussian_diffusion.py,
// _vb_terms_bpd, training_losses, _prior_bpd, calc_bpd_loop). The bound (Ho et al. eq. 5,
// Nichol & Dhariwal eqs. 4-6) is L_vlb = L_0 + L_1 + ... + L_{T-1} + L_T, with
// L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), L_0 = -log p(x_0 | x_1) under the
// discretised decoder and L_T = KL(q(x_T | x_0) || N(0, I)).
#include "idiff/diffusion/gaussian_diffusion.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/losses.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace idiff {

at::Tensor GaussianDiffusion::vb_terms_from(const PMeanVariance& out, const at::Tensor& x_start,
                                            const at::Tensor& x_t, const at::Tensor& t) const {
  const MeanVariance true_post = q_posterior_impl(x_start, x_t, t);
  const at::Tensor kl =
      mean_flat(normal_kl(true_post.mean, true_post.log_variance, out.mean, out.log_variance)) /
      std::log(2.0);
  const at::Tensor decoder_nll =
      mean_flat(-discretized_gaussian_log_likelihood(x_start, out.mean, 0.5 * out.log_variance)) /
      std::log(2.0);
  // The decoder NLL at the first step, the KL everywhere else.
  return at::where(t.to(kl.device()) == 0, decoder_nll, kl);
}

VbTerms GaussianDiffusion::vb_terms_bpd(const ModelFn& model, const at::Tensor& x_start,
                                        const at::Tensor& x_t, const at::Tensor& t,
                                        bool clip_denoised) const {
  check_timesteps(t, x_t.size(0), "vb_terms_bpd");
  IDIFF_REQUIRE(x_start.sizes() == x_t.sizes(), Error, "vb_terms_bpd: x_start ", x_start.sizes(),
                " and x_t ", x_t.sizes(), " differ in shape");
  const PMeanVariance out = p_mean_variance_unchecked(model, x_t, t, clip_denoised, {});
  return {vb_terms_from(out, x_start, x_t, t), out.pred_xstart};
}

LossTerms GaussianDiffusion::training_losses(const ModelFn& model, const at::Tensor& x_start,
                                             const at::Tensor& t, const at::Tensor& noise_in,
                                             const std::optional<at::Generator>& generator) const {
  check_timesteps(t, x_start.size(0), "training_losses");
  const at::Tensor noise =
      noise_in.defined() ? noise_in : draw_normal(x_start.sizes(), x_start.options(), generator);
  IDIFF_REQUIRE(noise.sizes() == x_start.sizes(), Error, "training_losses: noise ", noise.sizes(),
                " differs in shape from x_start ", x_start.sizes());
  const at::Tensor x_t = q_sample_impl(x_start, t, noise);
  const double T = static_cast<double>(num_timesteps());

  LossTerms terms;
  if (is_vb(loss_type_)) {
    // L_t alone (clip_denoised off: the bound of the unclipped model), times T to estimate
    // the whole sum for RESCALED_KL.
    const PMeanVariance out = p_mean_variance_unchecked(model, x_t, t, false, {});
    at::Tensor loss = vb_terms_from(out, x_start, x_t, t);
    if (loss_type_ == LossType::RescaledKL) loss = loss * T;
    terms["loss"] = loss;
    return terms;
  }

  const at::Tensor model_output = model(x_t, model_timesteps(t));
  at::Tensor mean_output = model_output;
  if (var_type_ == ModelVarType::Learned || var_type_ == ModelVarType::LearnedRange) {
    const int64_t C = x_t.size(1);
    std::vector<int64_t> expected = x_t.sizes().vec();
    expected[1] = 2 * C;
    IDIFF_REQUIRE(model_output.sizes().vec() == expected, Error, "the model output is ",
                  model_output.sizes(), " but a learned variance expects ",
                  at::IntArrayRef(expected), ": make the model with `learn_sigma` True");
    // [N, 2C, ...] -> mean part and variance part, [N, C, ...] each.
    const auto parts = model_output.split(C, 1);
    mean_output = parts[0];
    // Nichol & Dhariwal sec. 3.1, the hybrid objective L_simple + lambda L_vlb: the VLB term
    // trains only the variance, so it sees the mean output detached.
    const at::Tensor frozen_out = at::cat({mean_output.detach(), parts[1]}, 1);
    const PMeanVariance frozen = p_mean_variance_from_output_impl(frozen_out, x_t, t, false, {});
    at::Tensor vb = vb_terms_from(frozen, x_start, x_t, t);
    // lambda = 1/1000 for T = 1000 (eq. 16): without it the VLB term hurts the MSE term.
    if (loss_type_ == LossType::RescaledMSE) vb = vb * (T / 1000.0);
    terms["vb"] = vb;
  }

  at::Tensor target;
  switch (mean_type_) {
    case ModelMeanType::PreviousX:
      target = q_posterior_impl(x_start, x_t, t).mean;
      break;
    case ModelMeanType::StartX:
      target = x_start;
      break;
    case ModelMeanType::Epsilon:
      target = noise;
      break;  // L_simple, Ho et al. eq. 14
  }
  IDIFF_REQUIRE(mean_output.sizes() == target.sizes(), Error, "the model output is ",
                model_output.sizes(), " but the diffusion expects ", target.sizes(),
                ": make the model with `learn_sigma` False for a fixed variance");
  terms["mse"] = mean_flat((target - mean_output).pow(2));
  terms["loss"] = terms.count("vb") ? terms["mse"] + terms["vb"] : terms["mse"];
  return terms;
}

at::Tensor GaussianDiffusion::prior_bpd(const at::Tensor& x_start) const {
  const at::Tensor t = at::full({x_start.size(0)}, num_timesteps() - 1,
                                at::TensorOptions().dtype(at::kLong).device(x_start.device()));
  const MeanVariance qt = q_mean_variance_impl(x_start, t);
  const at::Tensor zero = at::zeros({}, qt.mean.options());
  return mean_flat(normal_kl(qt.mean, qt.log_variance, zero, zero)) / std::log(2.0);
}

BpdResult GaussianDiffusion::calc_bpd_loop(const ModelFn& model, const at::Tensor& x_start,
                                           bool clip_denoised,
                                           const std::optional<at::Generator>& generator) const {
  const c10::NoGradGuard no_grad;
  const int64_t batch = x_start.size(0);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(x_start.device());
  std::vector<at::Tensor> vb, xstart_mse, mse;
  for (int64_t step = num_timesteps() - 1; step >= 0; --step) {
    const at::Tensor t = at::full({batch}, step, long_opts);
    const at::Tensor noise = draw_normal(x_start.sizes(), x_start.options(), generator);
    const at::Tensor x_t = q_sample_impl(x_start, t, noise);
    const PMeanVariance out = p_mean_variance_unchecked(model, x_t, t, clip_denoised, {});
    vb.push_back(vb_terms_from(out, x_start, x_t, t));
    xstart_mse.push_back(mean_flat((out.pred_xstart - x_start).pow(2)));
    const at::Tensor eps = predict_eps_from_xstart(x_t, t, out.pred_xstart);
    mse.push_back(mean_flat((eps - noise).pow(2)));
  }
  BpdResult r;
  r.vb = at::stack(vb, 1);  // [N, T]
  r.xstart_mse = at::stack(xstart_mse, 1);
  r.mse = at::stack(mse, 1);
  r.prior_bpd = prior_bpd(x_start);
  r.total_bpd = r.vb.sum(1) + r.prior_bpd;
  return r;
}

}  // namespace idiff
