#include "idiff/diffusion/karras_diffusion.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/losses.h"

#include <ATen/ATen.h>

#include <cmath>

namespace idiff {

const char* weight_schedule_names() {
  return "karras, snr, snr+1, truncated-snr, uniform";
}

void check_karras_params(const KarrasParams& p) {
  IDIFF_REQUIRE(std::isfinite(p.sigma_min) && p.sigma_min > 0, ConfigError,
                "`sigma_min` must be a positive number, got ", p.sigma_min);
  IDIFF_REQUIRE(std::isfinite(p.sigma_max) && p.sigma_max > p.sigma_min, ConfigError,
                "`sigma_max` must be greater than `sigma_min` (", p.sigma_min, "), got ",
                p.sigma_max);
  IDIFF_REQUIRE(std::isfinite(p.sigma_data) && p.sigma_data > 0, ConfigError,
                "`sigma_data` must be a positive number, got ", p.sigma_data);
  IDIFF_REQUIRE(std::isfinite(p.rho) && p.rho > 0, ConfigError,
                "`rho` must be a positive number, got ", p.rho);
  const std::string& w = p.weight_schedule;
  IDIFF_REQUIRE(
      w == "karras" || w == "snr" || w == "snr+1" || w == "truncated-snr" || w == "uniform",
      ConfigError, "`weight_schedule` must be one of ", weight_schedule_names(), ", got '", w, "'");
}

KarrasDenoiser::KarrasDenoiser(KarrasParams params) : params_(std::move(params)) {
  check_karras_params(params_);
}

KarrasScalings KarrasDenoiser::scalings(const at::Tensor& sigma) const {
  const double sd = params_.sigma_data, sd2 = sd * sd;
  const at::Tensor norm = (sigma * sigma + sd2).sqrt();  // sqrt(sigma^2 + sigma_data^2)
  KarrasScalings s;
  s.c_in = 1.0 / norm;
  if (!params_.distillation) {
    s.c_skip = sd2 / (sigma * sigma + sd2);
    s.c_out = sigma * sd / norm;
  } else {
    // Song et al. 2023, appendix C: c_skip(sigma_min) = 1 and c_out(sigma_min) = 0.
    const at::Tensor shifted = sigma - params_.sigma_min;
    s.c_skip = sd2 / (shifted * shifted + sd2);
    s.c_out = shifted * sd / norm;
  }
  return s;
}

at::Tensor KarrasDenoiser::model_time(const at::Tensor& sigma) {
  return 1000 * 0.25 * at::log(sigma + 1e-44);
}

KarrasDenoised KarrasDenoiser::denoise(const ModelFn& model, const at::Tensor& x_t,
                                       const at::Tensor& sigmas) const {
  const KarrasScalings s = scalings(sigmas);
  const int64_t d = x_t.dim();
  KarrasDenoised out;
  out.model_output = model(append_dims(s.c_in, d) * x_t, model_time(sigmas));
  out.denoised = append_dims(s.c_out, d) * out.model_output + append_dims(s.c_skip, d) * x_t;
  return out;
}

at::Tensor KarrasDenoiser::weightings(const at::Tensor& sigmas) const {
  const at::Tensor snr = sigmas.pow(-2);
  const std::string& w = params_.weight_schedule;
  if (w == "snr") return snr;
  if (w == "snr+1") return snr + 1;
  if (w == "karras") return snr + 1.0 / (params_.sigma_data * params_.sigma_data);
  if (w == "truncated-snr") return snr.clamp_min(1.0);
  return at::ones_like(snr);  // uniform (check_karras_params refused the rest)
}

LossTerms KarrasDenoiser::training_losses(const ModelFn& model, const at::Tensor& x_start,
                                          const at::Tensor& sigmas, const at::Tensor& noise) const {
  const int64_t d = x_start.dim();
  const at::Tensor x_t = x_start + noise * append_dims(sigmas, d);
  const at::Tensor denoised = denoise(model, x_t, sigmas).denoised;
  const at::Tensor sq = (denoised - x_start).pow(2);
  LossTerms terms;
  terms["xs_mse"] = mean_flat(sq);
  terms["mse"] = mean_flat(append_dims(weightings(sigmas), d) * sq);
  terms["loss"] = terms["mse"];
  return terms;
}

std::vector<double> karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho) {
  IDIFF_REQUIRE(n >= 1, ConfigError, "`steps` must be at least 1, got ", n);
  const double hi = std::pow(sigma_max, 1.0 / rho), lo = std::pow(sigma_min, 1.0 / rho);
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) {
    const double ramp = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    out.push_back(std::pow(hi + ramp * (lo - hi), rho));
  }
  out.push_back(0.0);
  return out;
}

}  // namespace idiff
