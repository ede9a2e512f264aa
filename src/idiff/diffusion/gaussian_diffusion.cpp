#include "idiff/diffusion/gaussian_diffusion.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/losses.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <mutex>
#include <numeric>
#include <utility>

namespace idiff {

at::Tensor draw_normal(at::IntArrayRef shape, const at::TensorOptions& options,
                       const std::optional<at::Generator>& generator) {
  if (generator.has_value() && generator->device().type() != options.device().type()) {
    // e.g. a CPU generator for CUDA samples: draw on the generator's device, then copy.
    return at::randn(shape, generator, options.device(generator->device())).to(options.device());
  }
  return at::randn(shape, generator, options);
}

const char* enum_name(ModelMeanType v) {
  switch (v) {
    case ModelMeanType::PreviousX:
      return "PREVIOUS_X";
    case ModelMeanType::StartX:
      return "START_X";
    case ModelMeanType::Epsilon:
      return "EPSILON";
  }
  return "?";
}

const char* enum_name(ModelVarType v) {
  switch (v) {
    case ModelVarType::Learned:
      return "LEARNED";
    case ModelVarType::FixedSmall:
      return "FIXED_SMALL";
    case ModelVarType::FixedLarge:
      return "FIXED_LARGE";
    case ModelVarType::LearnedRange:
      return "LEARNED_RANGE";
  }
  return "?";
}

const char* enum_name(LossType v) {
  switch (v) {
    case LossType::MSE:
      return "MSE";
    case LossType::RescaledMSE:
      return "RESCALED_MSE";
    case LossType::KL:
      return "KL";
    case LossType::RescaledKL:
      return "RESCALED_KL";
  }
  return "?";
}

DiffusionSchedule::DiffusionSchedule(std::vector<double> b) : betas(std::move(b)) {
  const size_t n = betas.size();
  // posterior_log_variance_clipped and FIXED_LARGE read beta~_1: two steps at least.
  IDIFF_REQUIRE(n >= 2, ConfigError, "a diffusion process needs at least 2 steps, got ", n);
  for (size_t i = 0; i < n; ++i) {
    IDIFF_REQUIRE(betas[i] > 0.0 && betas[i] <= 1.0, ConfigError, "beta ", i, " is ", betas[i],
                  ": betas must be in (0, 1]");
  }
  auto each = [n](auto f) {
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = f(i);
    return out;
  };
  alphas_cumprod.resize(n);
  double prod = 1.0;
  for (size_t i = 0; i < n; ++i) alphas_cumprod[i] = prod *= 1.0 - betas[i];
  const auto& ac = alphas_cumprod;
  alphas_cumprod_prev = each([&](size_t i) { return i == 0 ? 1.0 : ac[i - 1]; });
  alphas_cumprod_next = each([&](size_t i) { return i + 1 == n ? 0.0 : ac[i + 1]; });
  const auto& acp = alphas_cumprod_prev;
  sqrt_alphas_cumprod = each([&](size_t i) { return std::sqrt(ac[i]); });
  sqrt_one_minus_alphas_cumprod = each([&](size_t i) { return std::sqrt(1.0 - ac[i]); });
  log_one_minus_alphas_cumprod = each([&](size_t i) { return std::log(1.0 - ac[i]); });
  sqrt_recip_alphas_cumprod = each([&](size_t i) { return std::sqrt(1.0 / ac[i]); });
  sqrt_recipm1_alphas_cumprod = each([&](size_t i) { return std::sqrt(1.0 / ac[i] - 1); });
  // Ho et al. eq. 7: beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t and
  // mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
  //       + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t.
  posterior_variance = each([&](size_t i) { return betas[i] * (1.0 - acp[i]) / (1.0 - ac[i]); });
  posterior_log_variance_clipped =
      each([&](size_t i) { return std::log(posterior_variance[i == 0 ? 1 : i]); });
  posterior_mean_coef1 =
      each([&](size_t i) { return betas[i] * std::sqrt(acp[i]) / (1.0 - ac[i]); });
  posterior_mean_coef2 =
      each([&](size_t i) { return (1.0 - acp[i]) * std::sqrt(1.0 - betas[i]) / (1.0 - ac[i]); });
}

struct GaussianDiffusion::DeviceTables {
  at::Tensor table;         // [kNumCoefs, T] float64
  at::Tensor timestep_map;  // [T] int64
};

struct GaussianDiffusion::TableCache {
  std::mutex mutex;
  std::vector<std::pair<c10::Device, std::unique_ptr<DeviceTables>>> entries;
};

GaussianDiffusion::GaussianDiffusion(const DiffusionParams& params)
    : GaussianDiffusion(params, {}, static_cast<int64_t>(params.betas.size())) {}

GaussianDiffusion::GaussianDiffusion(const DiffusionParams& params,
                                     std::vector<int64_t> timestep_map, int64_t original_num_steps)
    : schedule_(params.betas),
      mean_type_(params.model_mean_type),
      var_type_(params.model_var_type),
      loss_type_(params.loss_type),
      rescale_timesteps_(params.rescale_timesteps),
      timestep_map_(std::move(timestep_map)),
      original_num_steps_(original_num_steps),
      cache_(std::make_shared<TableCache>()) {
  const int64_t n = num_timesteps();
  if (timestep_map_.empty()) {
    timestep_map_.resize(static_cast<size_t>(n));
    std::iota(timestep_map_.begin(), timestep_map_.end(), int64_t{0});
  }
  TORCH_CHECK(static_cast<int64_t>(timestep_map_.size()) == n, "timestep map has ",
              timestep_map_.size(), " entries for ", n, " steps");

  const DiffusionSchedule& s = schedule_;
  table_cpu_ = at::empty({kNumCoefs, n}, at::kDouble);
  auto row = [&](Coef c, auto f) {
    double* p = table_cpu_[c].data_ptr<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = f(static_cast<size_t>(i));
  };
  row(kAlphasCumprod, [&](size_t i) { return s.alphas_cumprod[i]; });
  row(kAlphasCumprodPrev, [&](size_t i) { return s.alphas_cumprod_prev[i]; });
  row(kAlphasCumprodNext, [&](size_t i) { return s.alphas_cumprod_next[i]; });
  row(kOneMinusAlphasCumprod, [&](size_t i) { return 1.0 - s.alphas_cumprod[i]; });
  row(kSqrtAlphasCumprod, [&](size_t i) { return s.sqrt_alphas_cumprod[i]; });
  row(kSqrtOneMinusAlphasCumprod, [&](size_t i) { return s.sqrt_one_minus_alphas_cumprod[i]; });
  row(kLogOneMinusAlphasCumprod, [&](size_t i) { return s.log_one_minus_alphas_cumprod[i]; });
  row(kSqrtRecipAlphasCumprod, [&](size_t i) { return s.sqrt_recip_alphas_cumprod[i]; });
  row(kSqrtRecipm1AlphasCumprod, [&](size_t i) { return s.sqrt_recipm1_alphas_cumprod[i]; });
  row(kPosteriorVariance, [&](size_t i) { return s.posterior_variance[i]; });
  row(kPosteriorLogVarianceClipped, [&](size_t i) { return s.posterior_log_variance_clipped[i]; });
  row(kPosteriorMeanCoef1, [&](size_t i) { return s.posterior_mean_coef1[i]; });
  row(kPosteriorMeanCoef2, [&](size_t i) { return s.posterior_mean_coef2[i]; });
  row(kRecipPosteriorMeanCoef1, [&](size_t i) { return 1.0 / s.posterior_mean_coef1[i]; });
  row(kPosteriorMeanCoef2OverCoef1,
      [&](size_t i) { return s.posterior_mean_coef2[i] / s.posterior_mean_coef1[i]; });
  row(kLogBetas, [&](size_t i) { return std::log(s.betas[i]); });
  row(kFixedLargeVariance, [&](size_t i) { return i == 0 ? s.posterior_variance[1] : s.betas[i]; });
  row(kFixedLargeLogVariance,
      [&](size_t i) { return std::log(i == 0 ? s.posterior_variance[1] : s.betas[i]); });
}

const GaussianDiffusion::DeviceTables& GaussianDiffusion::tables(const c10::Device& device) const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  for (const auto& [d, t] : cache_->entries) {
    if (d == device) return *t;
  }
  auto t = std::make_unique<DeviceTables>();
  t->table = table_cpu_.to(device);
  t->timestep_map = at::tensor(timestep_map_, at::kLong).to(device);
  cache_->entries.emplace_back(device, std::move(t));
  return *cache_->entries.back().second;
}

at::Tensor GaussianDiffusion::extract(Coef c, const at::Tensor& t, const at::Tensor& like) const {
  const at::Tensor table = tables(like.device()).table;
  at::Tensor res = table[c].index_select(0, t.to(like.device(), at::kLong));
  res = res.to(like.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = res.size(0);
  return res.view(shape).expand(like.sizes());
}

void GaussianDiffusion::check_timesteps(const at::Tensor& t, int64_t batch,
                                        const char* where) const {
  IDIFF_REQUIRE(t.defined(), Error, where, ": timesteps t are missing");
  IDIFF_REQUIRE(t.dim() == 1 && t.size(0) == batch, Error, where, ": timesteps t must be [", batch,
                "] (one per sample), got ", t.sizes());
  IDIFF_REQUIRE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), Error, where,
                ": timesteps t must be integers, got ", t.scalar_type());
  if (batch == 0) return;
  const auto [lo, hi] = at::aminmax(t);
  const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  IDIFF_REQUIRE(min >= 0 && max < num_timesteps(), Error, where, ": timesteps must be in [0, ",
                num_timesteps(), "), got values from ", min, " to ", max);
}

// ---- the forward process ----

MeanVariance GaussianDiffusion::q_mean_variance_impl(const at::Tensor& x_start,
                                                     const at::Tensor& t) const {
  return {extract(kSqrtAlphasCumprod, t, x_start) * x_start,
          extract(kOneMinusAlphasCumprod, t, x_start),
          extract(kLogOneMinusAlphasCumprod, t, x_start)};
}

MeanVariance GaussianDiffusion::q_mean_variance(const at::Tensor& x_start,
                                                const at::Tensor& t) const {
  check_timesteps(t, x_start.size(0), "q_mean_variance");
  return q_mean_variance_impl(x_start, t);
}

at::Tensor GaussianDiffusion::q_sample_impl(const at::Tensor& x_start, const at::Tensor& t,
                                            const at::Tensor& noise) const {
  // Ho et al. eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
  return extract(kSqrtAlphasCumprod, t, x_start) * x_start +
         extract(kSqrtOneMinusAlphasCumprod, t, x_start) * noise;
}

at::Tensor GaussianDiffusion::q_sample(const at::Tensor& x_start, const at::Tensor& t,
                                       const at::Tensor& noise,
                                       const std::optional<at::Generator>& generator) const {
  check_timesteps(t, x_start.size(0), "q_sample");
  const at::Tensor eps =
      noise.defined() ? noise : draw_normal(x_start.sizes(), x_start.options(), generator);
  IDIFF_REQUIRE(eps.sizes() == x_start.sizes(), Error, "q_sample: noise ", eps.sizes(),
                " differs in shape from x_start ", x_start.sizes());
  return q_sample_impl(x_start, t, eps);
}

MeanVariance GaussianDiffusion::q_posterior_impl(const at::Tensor& x_start, const at::Tensor& x_t,
                                                 const at::Tensor& t) const {
  TORCH_CHECK(x_start.sizes() == x_t.sizes(), "q_posterior: x_start ", x_start.sizes(), " and x_t ",
              x_t.sizes(), " differ in shape");
  return {
      extract(kPosteriorMeanCoef1, t, x_t) * x_start + extract(kPosteriorMeanCoef2, t, x_t) * x_t,
      extract(kPosteriorVariance, t, x_t), extract(kPosteriorLogVarianceClipped, t, x_t)};
}

MeanVariance GaussianDiffusion::q_posterior_mean_variance(const at::Tensor& x_start,
                                                          const at::Tensor& x_t,
                                                          const at::Tensor& t) const {
  check_timesteps(t, x_t.size(0), "q_posterior_mean_variance");
  IDIFF_REQUIRE(x_start.sizes() == x_t.sizes(), Error, "q_posterior_mean_variance: x_start ",
                x_start.sizes(), " and x_t ", x_t.sizes(), " differ in shape");
  return q_posterior_impl(x_start, x_t, t);
}

// ---- the reverse process ----

at::Tensor GaussianDiffusion::model_timesteps(const at::Tensor& t) const {
  const at::Tensor mapped = tables(t.device()).timestep_map.index_select(0, t.to(at::kLong));
  if (!rescale_timesteps_) return mapped;
  return mapped.to(at::kFloat) * (1000.0 / static_cast<double>(original_num_steps_));
}

at::Tensor GaussianDiffusion::predict_xstart_from_eps(const at::Tensor& x_t, const at::Tensor& t,
                                                      const at::Tensor& eps) const {
  TORCH_CHECK(x_t.sizes() == eps.sizes(), "predict_xstart_from_eps: shapes differ");
  return extract(kSqrtRecipAlphasCumprod, t, x_t) * x_t -
         extract(kSqrtRecipm1AlphasCumprod, t, x_t) * eps;
}

at::Tensor GaussianDiffusion::predict_xstart_from_xprev(const at::Tensor& x_t, const at::Tensor& t,
                                                        const at::Tensor& xprev) const {
  TORCH_CHECK(x_t.sizes() == xprev.sizes(), "predict_xstart_from_xprev: shapes differ");
  // (x_{t-1} - coef2 x_t) / coef1
  return extract(kRecipPosteriorMeanCoef1, t, x_t) * xprev -
         extract(kPosteriorMeanCoef2OverCoef1, t, x_t) * x_t;
}

at::Tensor GaussianDiffusion::predict_eps_from_xstart(const at::Tensor& x_t, const at::Tensor& t,
                                                      const at::Tensor& pred_xstart) const {
  return (extract(kSqrtRecipAlphasCumprod, t, x_t) * x_t - pred_xstart) /
         extract(kSqrtRecipm1AlphasCumprod, t, x_t);
}

PMeanVariance GaussianDiffusion::p_mean_variance_from_output_impl(
    const at::Tensor& model_output, const at::Tensor& x, const at::Tensor& t, bool clip_denoised,
    const DenoisedFn& denoised_fn) const {
  const int64_t C = x.size(1);
  const bool learned =
      var_type_ == ModelVarType::Learned || var_type_ == ModelVarType::LearnedRange;
  std::vector<int64_t> expected = x.sizes().vec();
  if (learned) expected[1] = 2 * C;
  IDIFF_REQUIRE(model_output.sizes().vec() == expected, Error, "the model output is ",
                model_output.sizes(), " but the diffusion (variance ", enum_name(var_type_),
                ") expects ", at::IntArrayRef(expected),
                learned ? ": a learned variance needs a model made with `learn_sigma` True"
                        : ": a fixed variance needs a model made with `learn_sigma` False");

  PMeanVariance out;
  at::Tensor mean_output = model_output;
  if (learned) {
    // [N, 2C, ...] -> mean part [N, C, ...], variance part [N, C, ...]
    const auto parts = model_output.split(C, 1);
    mean_output = parts[0];
    const at::Tensor& var_values = parts[1];
    if (var_type_ == ModelVarType::Learned) {
      out.log_variance = var_values;
    } else {
      // Nichol & Dhariwal eq. 15: Sigma = exp(v log beta_t + (1 - v) log beta~_t), with the
      // model's v in [-1, 1] mapped to [0, 1].
      const at::Tensor min_log = extract(kPosteriorLogVarianceClipped, t, x);
      const at::Tensor max_log = extract(kLogBetas, t, x);
      const at::Tensor frac = (var_values + 1) / 2;
      out.log_variance = frac * max_log + (1 - frac) * min_log;
    }
    out.variance = at::exp(out.log_variance);
  } else if (var_type_ == ModelVarType::FixedLarge) {
    out.variance = extract(kFixedLargeVariance, t, x);
    out.log_variance = extract(kFixedLargeLogVariance, t, x);
  } else {
    out.variance = extract(kPosteriorVariance, t, x);
    out.log_variance = extract(kPosteriorLogVarianceClipped, t, x);
  }

  auto process_xstart = [&](at::Tensor x0) {
    if (denoised_fn) x0 = denoised_fn(x0);
    return clip_denoised ? x0.clamp(-1, 1) : x0;
  };
  switch (mean_type_) {
    case ModelMeanType::PreviousX:
      out.pred_xstart = process_xstart(predict_xstart_from_xprev(x, t, mean_output));
      out.mean = mean_output;
      break;
    case ModelMeanType::StartX:
      out.pred_xstart = process_xstart(mean_output);
      out.mean = q_posterior_impl(out.pred_xstart, x, t).mean;
      break;
    case ModelMeanType::Epsilon:
      // Ho et al. eq. 11 written through x_0: mu = mu~_t(x_0(x_t, eps), x_t).
      out.pred_xstart = process_xstart(predict_xstart_from_eps(x, t, mean_output));
      out.mean = q_posterior_impl(out.pred_xstart, x, t).mean;
      break;
  }
  TORCH_CHECK(out.mean.sizes() == x.sizes() && out.log_variance.sizes() == x.sizes() &&
                  out.pred_xstart.sizes() == x.sizes(),
              "p_mean_variance: result shapes differ from x ", x.sizes());
  return out;
}

PMeanVariance GaussianDiffusion::p_mean_variance_unchecked(const ModelFn& model,
                                                           const at::Tensor& x, const at::Tensor& t,
                                                           bool clip_denoised,
                                                           const DenoisedFn& denoised_fn) const {
  const at::Tensor output = model(x, model_timesteps(t));
  return p_mean_variance_from_output_impl(output, x, t, clip_denoised, denoised_fn);
}

PMeanVariance GaussianDiffusion::p_mean_variance(const ModelFn& model, const at::Tensor& x,
                                                 const at::Tensor& t, bool clip_denoised,
                                                 const DenoisedFn& denoised_fn) const {
  check_timesteps(t, x.size(0), "p_mean_variance");
  return p_mean_variance_unchecked(model, x, t, clip_denoised, denoised_fn);
}

}  // namespace idiff
