// GaussianDiffusion: the forward process q, the model's reverse process p, the training
// objectives and the variational bound in bits/dim (reference:
// improved_diffusion/gaussian_diffusion.py; Ho et al. 2020 "DDPM", Nichol & Dhariwal 2021
// "Improved DDPM"). The single reverse steps (p_sample, ddim_sample) are defined in
// reverse_steps.cpp; the loops that drive them are in sampling/sample_loop.h.
//
// Every per-timestep array is float64 (DiffusionSchedule); values are gathered for a batch of
// timesteps and only then cast, to float32 for float32/16 inputs (the reference's
// _extract_into_tensor), to float64 for float64 inputs.
//
// Timesteps t are integer tensors [N] of this process's steps, 0 .. num_timesteps()-1 (a
// respaced process has fewer steps than the original; see respace.h). The public methods
// check them (shape, type, range: the range check reads t back, a device sync on GPUs); the
// loops, which make their own t, skip the check.
#pragma once

#include "idiff/diffusion/model_fn.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace idiff {

// N(0, I) noise of `shape` with `options`, drawn from `generator` (none: the device's
// default generator). A CPU generator also serves CUDA tensors: the numbers are drawn on the
// CPU and copied, so a seed gives the same noise on any device.
at::Tensor draw_normal(at::IntArrayRef shape, const at::TensorOptions& options,
                       const std::optional<at::Generator>& generator);

// What the model's (first C) output channels predict.
enum class ModelMeanType { PreviousX, StartX, Epsilon };
// Where the variance of p(x_{t-1} | x_t) comes from. LearnedRange: the model's second C
// channels v in [-1, 1] interpolate log beta_t and log beta~_t (Nichol & Dhariwal eq. 15).
enum class ModelVarType { Learned, FixedSmall, FixedLarge, LearnedRange };
// MSE: L_simple (Ho et al. eq. 14), plus the VLB term for a learned variance (the hybrid
// objective, Nichol & Dhariwal eq. 16); RescaledMSE: the same with the VLB term scaled by
// T/1000; KL: the VLB term L_t; RescaledKL: L_t * T, an estimate of the whole bound.
enum class LossType { MSE, RescaledMSE, KL, RescaledKL };

// The reference's enum member names ("EPSILON", "LEARNED_RANGE", "RESCALED_MSE").
const char* enum_name(ModelMeanType v);
const char* enum_name(ModelVarType v);
const char* enum_name(LossType v);
inline bool is_vb(LossType t) {
  return t == LossType::KL || t == LossType::RescaledKL;
}

struct DiffusionParams {
  std::vector<double> betas;  // beta_1 .. beta_T, each in (0, 1]
  ModelMeanType model_mean_type = ModelMeanType::Epsilon;
  ModelVarType model_var_type = ModelVarType::FixedLarge;
  LossType loss_type = LossType::MSE;
  // The model sees float timesteps t * 1000 / T (as in Ho et al. 2020) instead of t.
  bool rescale_timesteps = false;
};

// The float64 arrays of a process, one value per timestep (alpha_t = 1 - beta_t,
// alpha_bar_t = prod_{s<=t} alpha_s).
struct DiffusionSchedule {
  explicit DiffusionSchedule(std::vector<double> betas);

  std::vector<double> betas;
  std::vector<double> alphas_cumprod;       // alpha_bar_t
  std::vector<double> alphas_cumprod_prev;  // alpha_bar_{t-1}, 1 at t = 0
  std::vector<double> alphas_cumprod_next;  // alpha_bar_{t+1}, 0 at t = T-1
  std::vector<double> sqrt_alphas_cumprod;
  std::vector<double> sqrt_one_minus_alphas_cumprod;
  std::vector<double> log_one_minus_alphas_cumprod;
  std::vector<double> sqrt_recip_alphas_cumprod;
  std::vector<double> sqrt_recipm1_alphas_cumprod;
  // beta~_t of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7); it is 0 at t = 0, so its log is
  // clipped: the t = 0 entry repeats the t = 1 value.
  std::vector<double> posterior_variance;
  std::vector<double> posterior_log_variance_clipped;
  std::vector<double> posterior_mean_coef1;  // of x_0 in mu~_t (Ho et al. eq. 7)
  std::vector<double> posterior_mean_coef2;  // of x_t in mu~_t
};

struct MeanVariance {
  at::Tensor mean, variance, log_variance;  // each [N, C, ...]
};

// p(x_{t-1} | x_t) and the x_0 prediction behind it.
struct PMeanVariance {
  at::Tensor mean, variance, log_variance, pred_xstart;  // each [N, C, ...]
};

struct VbTerms {
  at::Tensor output;       // [N] L_t in bits/dim: KL for t > 0, decoder NLL for t = 0
  at::Tensor pred_xstart;  // [N, C, ...]
};

struct SampleOutput {
  at::Tensor sample, pred_xstart;  // each [N, C, ...]
};

// calc_bpd_loop's results. T is num_timesteps(); as in the reference, the columns are in
// loop order: column j holds timestep T-1-j.
struct BpdResult {
  at::Tensor total_bpd;   // [N] the whole bound: sum of vb + prior_bpd
  at::Tensor prior_bpd;   // [N] L_T
  at::Tensor vb;          // [N, T] L_t
  at::Tensor xstart_mse;  // [N, T] mean squared error of the x_0 prediction
  at::Tensor mse;         // [N, T] mean squared error of the implied epsilon
};

// training_losses' terms, each [N]: "loss", and "mse" (MSE losses), "vb" (learned variance
// with an MSE loss).
using LossTerms = std::map<std::string, at::Tensor>;

class GaussianDiffusion {
 public:
  explicit GaussianDiffusion(const DiffusionParams& params);

  int64_t num_timesteps() const { return static_cast<int64_t>(schedule_.betas.size()); }
  const DiffusionSchedule& schedule() const { return schedule_; }
  ModelMeanType model_mean_type() const { return mean_type_; }
  ModelVarType model_var_type() const { return var_type_; }
  LossType loss_type() const { return loss_type_; }
  bool rescale_timesteps() const { return rescale_timesteps_; }
  // The step of the original process behind each of this process's steps (the identity
  // unless respaced), and the original process's length.
  const std::vector<int64_t>& timestep_map() const { return timestep_map_; }
  int64_t original_num_steps() const { return original_num_steps_; }

  // ---- the forward process q ----
  // q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. eq. 4).
  MeanVariance q_mean_variance(const at::Tensor& x_start, const at::Tensor& t) const;
  // A draw from q(x_t | x_0) with the given noise (drawn from `generator` if undefined).
  at::Tensor q_sample(const at::Tensor& x_start, const at::Tensor& t, const at::Tensor& noise = {},
                      const std::optional<at::Generator>& generator = std::nullopt) const;
  // q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) (Ho et al. eqs. 6-7).
  MeanVariance q_posterior_mean_variance(const at::Tensor& x_start, const at::Tensor& x_t,
                                         const at::Tensor& t) const;

  // ---- the model and the reverse process p ----
  // The timesteps the network sees for t: mapped to the original process, and with
  // rescale_timesteps float32 t * 1000 / original_num_steps() (the reference's
  // _scale_timesteps / respace._WrappedModel).
  at::Tensor model_timesteps(const at::Tensor& t) const;
  // p(x_{t-1} | x_t): runs the model on (x, model_timesteps(t)).
  PMeanVariance p_mean_variance(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                                bool clip_denoised = true,
                                const DenoisedFn& denoised_fn = {}) const;

  // x_0 from epsilon (Ho et al. eq. 4 solved for x_0), from x_{t-1} (eq. 7 solved for x_0),
  // and epsilon from x_0.
  at::Tensor predict_xstart_from_eps(const at::Tensor& x_t, const at::Tensor& t,
                                     const at::Tensor& eps) const;
  at::Tensor predict_xstart_from_xprev(const at::Tensor& x_t, const at::Tensor& t,
                                       const at::Tensor& xprev) const;
  at::Tensor predict_eps_from_xstart(const at::Tensor& x_t, const at::Tensor& t,
                                     const at::Tensor& pred_xstart) const;

  // ---- objectives and the bound ----
  // L_t of the variational bound in bits/dim (Ho et al. eq. 5; Nichol & Dhariwal eqs. 4-6).
  VbTerms vb_terms_bpd(const ModelFn& model, const at::Tensor& x_start, const at::Tensor& x_t,
                       const at::Tensor& t, bool clip_denoised = true) const;
  // The loss of loss_type() for x_0 = x_start at steps t, every term per sample.
  LossTerms training_losses(const ModelFn& model, const at::Tensor& x_start, const at::Tensor& t,
                            const at::Tensor& noise = {},
                            const std::optional<at::Generator>& generator = std::nullopt) const;
  // L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim, [N]; constant for a given x_0.
  at::Tensor prior_bpd(const at::Tensor& x_start) const;
  // The whole bound, one model call per timestep (T calls), under no_grad.
  BpdResult calc_bpd_loop(const ModelFn& model, const at::Tensor& x_start,
                          bool clip_denoised = true,
                          const std::optional<at::Generator>& generator = std::nullopt) const;

  // ---- single reverse steps (reverse_steps.cpp) ----
  // x_{t-1} ~ p(x_{t-1} | x_t) (Ho et al. Algorithm 2, one step); no noise at t = 0.
  SampleOutput p_sample(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                        bool clip_denoised = true, const DenoisedFn& denoised_fn = {},
                        const std::optional<at::Generator>& generator = std::nullopt) const;
  // One DDIM step (Song et al. 2021, eq. 12) with sigma_t scaled by eta (eq. 16); eta = 0
  // is deterministic.
  SampleOutput ddim_sample(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                           bool clip_denoised = true, const DenoisedFn& denoised_fn = {},
                           double eta = 0.0,
                           const std::optional<at::Generator>& generator = std::nullopt) const;
  // x_{t+1} from x_t along the deterministic DDIM ODE (eq. 12 reversed, eta = 0).
  SampleOutput ddim_reverse_sample(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                                   bool clip_denoised = true,
                                   const DenoisedFn& denoised_fn = {}) const;
  // One step of either sampler with its N(0, I) draw given ([N, C, ...], drawn by the caller
  // where the step would draw it) and t unchecked: no host synchronisation, so the step can
  // be captured in a CUDA graph (sampling/sample_loop.h). t must hold valid timesteps.
  // cond_fn: classifier guidance as guided-diffusion's p_sample (condition_mean) and
  // ddim_sample (condition_score).
  SampleOutput p_sample_from_noise(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                                   const at::Tensor& noise, bool clip_denoised = true,
                                   const DenoisedFn& denoised_fn = {},
                                   const CondFn& cond_fn = {}) const;
  SampleOutput ddim_sample_from_noise(const ModelFn& model, const at::Tensor& x,
                                      const at::Tensor& t, const at::Tensor& noise,
                                      bool clip_denoised = true, const DenoisedFn& denoised_fn = {},
                                      double eta = 0.0, const CondFn& cond_fn = {}) const;

 protected:
  // A process over betas standing for the given steps of a longer one (SpacedDiffusion).
  GaussianDiffusion(const DiffusionParams& params, std::vector<int64_t> timestep_map,
                    int64_t original_num_steps);

 private:
  struct DeviceTables;  // the coefficient table and timestep map on one device
  struct TableCache;    // DeviceTables per device, made on first use
  // Rows of the coefficient table: every per-timestep value some formula gathers.
  enum Coef : int64_t {
    kAlphasCumprod,
    kAlphasCumprodPrev,
    kAlphasCumprodNext,
    kOneMinusAlphasCumprod,
    kSqrtAlphasCumprod,
    kSqrtOneMinusAlphasCumprod,
    kLogOneMinusAlphasCumprod,
    kSqrtRecipAlphasCumprod,
    kSqrtRecipm1AlphasCumprod,
    kPosteriorVariance,
    kPosteriorLogVarianceClipped,
    kPosteriorMeanCoef1,
    kPosteriorMeanCoef2,
    kRecipPosteriorMeanCoef1,      // 1 / coef1
    kPosteriorMeanCoef2OverCoef1,  // coef2 / coef1
    kLogBetas,
    // FIXED_LARGE uses beta_t, except beta~_1 at t = 0 for a better decoder likelihood.
    kFixedLargeVariance,
    kFixedLargeLogVariance,
    kNumCoefs
  };

  // Gathers coefficient `c` at t: [N] -> [N, 1, ...] like `like`, expanded to its shape.
  at::Tensor extract(Coef c, const at::Tensor& t, const at::Tensor& like) const;
  const DeviceTables& tables(const c10::Device& device) const;
  // Throws idiff::Error unless t is an integer [N] tensor, N = batch, within 0 .. T-1.
  void check_timesteps(const at::Tensor& t, int64_t batch, const char* where) const;

  MeanVariance q_mean_variance_impl(const at::Tensor& x_start, const at::Tensor& t) const;
  at::Tensor q_sample_impl(const at::Tensor& x_start, const at::Tensor& t,
                           const at::Tensor& noise) const;
  MeanVariance q_posterior_impl(const at::Tensor& x_start, const at::Tensor& x_t,
                                const at::Tensor& t) const;
  PMeanVariance p_mean_variance_from_output_impl(const at::Tensor& model_output,
                                                 const at::Tensor& x, const at::Tensor& t,
                                                 bool clip_denoised,
                                                 const DenoisedFn& denoised_fn) const;
  PMeanVariance p_mean_variance_unchecked(const ModelFn& model, const at::Tensor& x,
                                          const at::Tensor& t, bool clip_denoised,
                                          const DenoisedFn& denoised_fn) const;
  at::Tensor vb_terms_from(const PMeanVariance& out, const at::Tensor& x_start,
                           const at::Tensor& x_t, const at::Tensor& t) const;
  SampleOutput p_sample_unchecked(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                                  bool clip_denoised, const DenoisedFn& denoised_fn,
                                  const std::optional<at::Generator>& generator) const;
  SampleOutput ddim_sample_unchecked(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                                     bool clip_denoised, const DenoisedFn& denoised_fn, double eta,
                                     const std::optional<at::Generator>& generator) const;
  // Steps whose noise comes from noise_fn, called after the model.
  SampleOutput p_sample_step(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                             bool clip_denoised, const DenoisedFn& denoised_fn,
                             const std::function<at::Tensor()>& noise_fn,
                             const CondFn& cond_fn = {}) const;
  SampleOutput ddim_step(const ModelFn& model, const at::Tensor& x, const at::Tensor& t,
                         bool clip_denoised, const DenoisedFn& denoised_fn, double eta,
                         const std::function<at::Tensor()>& noise_fn,
                         const CondFn& cond_fn = {}) const;

  DiffusionSchedule schedule_;
  ModelMeanType mean_type_;
  ModelVarType var_type_;
  LossType loss_type_;
  bool rescale_timesteps_;
  std::vector<int64_t> timestep_map_;
  int64_t original_num_steps_;
  at::Tensor table_cpu_;               // [K, T] float64, one row per Coef
  std::shared_ptr<TableCache> cache_;  // shared by copies: the tables never change
};

}  // namespace idiff
