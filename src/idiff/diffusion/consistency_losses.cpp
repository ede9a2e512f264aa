#include "idiff/diffusion/consistency_losses.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/losses.h"
#include "idiff/diffusion/sampling/denoiser.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

namespace idiff {
namespace {

// Level `index` (fractional for progressive distillation's midpoints) of `n` Karras levels
// from sigma_max down to sigma_min (rho spacing).
at::Tensor karras_level(const KarrasParams& p, const at::Tensor& index, int64_t n) {
  const double hi = std::pow(p.sigma_max, 1.0 / p.rho), lo = std::pow(p.sigma_min, 1.0 / p.rho);
  return (hi + index.to(at::kDouble) / static_cast<double>(n - 1) * (lo - hi)).pow(p.rho);
}

}  // namespace

at::Tensor consistency_norm(const at::Tensor& a, const at::Tensor& b, const LossNorm& loss_norm) {
  const std::string& norm = loss_norm.name;
  if (norm == "lpips") {
    IDIFF_REQUIRE(loss_norm.lpips, ConfigError, "`loss_norm` lpips needs the LPIPS network");
    const auto up = [](const at::Tensor& x) {
      return x.size(-1) < 256 ? at::upsample_bilinear2d(x, {224, 224}, false) : x;
    };
    return loss_norm.lpips((up(a) + 1) / 2, (up(b) + 1) / 2);
  }
  if (norm == "l1") return mean_flat((a - b).abs());
  if (norm == "l2") return mean_flat((a - b).pow(2));
  if (norm == "l2-32") {
    // F.interpolate(size=32, mode="bilinear"): align_corners False, no antialiasing.
    const auto up = [](const at::Tensor& x) { return at::upsample_bilinear2d(x, {32, 32}, false); };
    return mean_flat((up(a) - up(b)).pow(2));
  }
  if (norm == "pseudo_huber") {
    const double c = 0.00054 * std::sqrt(static_cast<double>(a[0].numel()));
    return mean_flat(((a - b).pow(2) + c * c).sqrt() - c);
  }
  check_consistency_loss_norm(norm);
  return {};
}

void check_consistency_loss_norm(const std::string& norm) {
  IDIFF_REQUIRE(
      norm == "l1" || norm == "l2" || norm == "l2-32" || norm == "pseudo_huber" || norm == "lpips",
      ConfigError, "`loss_norm` must be one of ", consistency_loss_norms(), ", got '", norm, "'");
}

const char* consistency_loss_norms() {
  return "l1, l2, l2-32, pseudo_huber, lpips";
}

ConsistencyTerms consistency_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                    const ModelFn& target, const ModelFn& teacher,
                                    const KarrasDenoiser& teacher_diffusion,
                                    const at::Tensor& x_start, int64_t num_scales,
                                    const at::Tensor& indices, const at::Tensor& noise,
                                    const LossNorm& loss_norm) {
  DenoiseFn denoiser;
  if (teacher) {
    denoiser = [&](const at::Tensor& x, const at::Tensor& sigma) {
      return teacher_diffusion.denoise(teacher, x, sigma).denoised;
    };
  }
  return consistency_losses(diffusion, student, target, denoiser, x_start, num_scales, indices,
                            noise, loss_norm);
}

ConsistencyTerms consistency_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                    const ModelFn& target, const DenoiseFn& teacher,
                                    const at::Tensor& x_start, int64_t num_scales,
                                    const at::Tensor& indices, const at::Tensor& noise,
                                    const LossNorm& loss_norm) {
  IDIFF_REQUIRE(num_scales >= 2, ConfigError, "the number of scales must be at least 2, got ",
                num_scales);
  const int64_t d = x_start.dim();
  const at::ScalarType dtype = x_start.scalar_type();
  ConsistencyTerms r;
  r.t = karras_level(diffusion.params(), indices, num_scales).to(dtype);
  r.t2 = karras_level(diffusion.params(), indices + 1, num_scales).to(dtype);
  r.x_t = x_start + noise * append_dims(r.t, d);
  // The target network sees the same dropout draw as the student (the reference keeps the
  // generator's state across the student's forward and puts it back for the target's).
  at::Generator gen = at::globalContext().defaultGenerator(x_start.device());
  const at::Tensor dropout_state = gen.get_state();
  r.distiller = diffusion.denoise(student, r.x_t, r.t).denoised;
  {
    const c10::NoGradGuard no_grad;
    const at::Tensor dt = append_dims(r.t2 - r.t, d);
    // The ODE's derivative (x - D(x, t)) / t, with D the teacher's denoiser or, for
    // consistency training, x_0 itself.
    const auto slope = [&](const at::Tensor& x, const at::Tensor& t) {
      return (x - (teacher ? teacher(x, t) : x_start)) / append_dims(t, d);
    };
    const at::Tensor d1 = slope(r.x_t, r.t);
    r.x_t2 = r.x_t + d1 * dt;                                               // Euler
    if (teacher) r.x_t2 = r.x_t + (d1 + slope(r.x_t2, r.t2)) * (dt * 0.5);  // Heun
    gen.set_state(dropout_state);
    r.target = diffusion.denoise(target, r.x_t2, r.t2).denoised;
  }
  r.loss = consistency_norm(r.distiller, r.target, loss_norm) * diffusion.weightings(r.t);
  return r;
}

ConsistencyTerms progdist_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                 const DenoiseFn& teacher, const at::Tensor& x_start,
                                 int64_t num_scales, const at::Tensor& indices,
                                 const at::Tensor& noise, const LossNorm& loss_norm) {
  IDIFF_REQUIRE(num_scales >= 1, ConfigError, "the number of scales must be at least 1, got ",
                num_scales);
  const int64_t d = x_start.dim();
  const at::ScalarType dtype = x_start.scalar_type();
  const KarrasParams& p = diffusion.params();
  // num_scales + 1 levels, the last sigma_min: index i of them is i / num_scales of the way.
  const auto level = [&](double shift) {
    return karras_level(p, indices.to(at::kDouble) + shift, num_scales + 1).to(dtype);
  };
  ConsistencyTerms r;
  r.t = level(0.0);
  const at::Tensor t_half = level(0.5);
  r.t2 = level(1.0);
  r.x_t = x_start + noise * append_dims(r.t, d);
  r.distiller = diffusion.denoise(student, r.x_t, r.t).denoised;
  {
    const c10::NoGradGuard no_grad;
    const auto euler = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& next) {
      return x + (x - teacher(x, t)) / append_dims(t, d) * append_dims(next - t, d);
    };
    r.x_t2 = euler(euler(r.x_t, r.t, t_half), t_half, r.t2);
    // The x_0 whose one Euler step from (x_t, t) lands where the teacher's two did.
    r.target = r.x_t - append_dims(r.t, d) * (r.x_t2 - r.x_t) / append_dims(r.t2 - r.t, d);
  }
  r.loss = consistency_norm(r.distiller, r.target, loss_norm) * diffusion.weightings(r.t);
  return r;
}

DenoiseFn vp_denoiser(const ModelFn& net, const NoiseSchedule& schedule, bool predict_xstart,
                      bool learned_variance, bool clip) {
  DenoiserOptions o;
  o.predict_xstart = predict_xstart;
  o.learned_variance = learned_variance;
  o.threshold = clip ? Threshold::Clip : Threshold::None;
  const Denoiser denoiser(net, o);
  return [denoiser, schedule](const at::Tensor& x, const at::Tensor& sigma) {
    // Each sample's level: its (fractional) model time and VP alpha, sigma.
    const at::Tensor s = sigma.detach().to(at::kCPU, at::kDouble).contiguous();
    const int64_t n = s.numel();
    std::vector<double> t_model(n), alpha(n), sigma_vp(n);
    for (int64_t i = 0; i < n; ++i) {
      const NoiseLevel l = schedule.level_of_sigma_k(s.data_ptr<double>()[i]);
      t_model[i] = l.t_model, alpha[i] = l.alpha, sigma_vp[i] = l.sigma;
    }
    const auto as = [&](const std::vector<double>& v, bool per_pixel) {
      at::Tensor t = at::tensor(v, at::kDouble).to(x.device(), x.scalar_type());
      return per_pixel ? append_dims(t, x.dim()) : t;
    };
    const at::Tensor a = as(alpha, true);
    return denoiser(x * a, as(t_model, false), a, as(sigma_vp, true));
  };
}

EmaAndScales ema_and_scales(const EmaScalesOptions& o, int64_t step) {
  const std::string &ema = o.target_ema_mode, &scale = o.scale_mode;
  // The progressive count: ceil(sqrt(step / K ((s1 + 1)^2 - s0^2) + s0^2) - 1), at least 1.
  const auto progressive = [&] {
    const double s0 = static_cast<double>(o.start_scales), s1 = static_cast<double>(o.end_scales);
    const double frac = static_cast<double>(step) / static_cast<double>(o.total_steps);
    const auto n = static_cast<int64_t>(
        std::ceil(std::sqrt(frac * ((s1 + 1) * (s1 + 1) - s0 * s0) + s0 * s0) - 1));
    return std::max<int64_t>(n, 1);
  };
  if (ema == "fixed" && scale == "fixed") return {o.start_ema, o.start_scales};
  if (ema == "fixed" && scale == "progressive") return {o.start_ema, progressive() + 1};
  if (ema == "adaptive" && scale == "progressive") {
    const int64_t n = progressive();
    const double c = -std::log(o.start_ema) * static_cast<double>(o.start_scales);
    return {std::exp(-c / static_cast<double>(n)), n + 1};
  }
  if (ema == "fixed" && scale == "progdist") {
    // Halve the scales every distill_steps_per_iter steps down to 2, then 2 -> 1 after twice
    // as long again.
    const int64_t stage = step / o.distill_steps_per_iter;
    int64_t n = stage >= 62 ? 0 : o.start_scales / (int64_t{1} << stage);
    n = std::max<int64_t>(n, 2);
    const double sub = std::max(
        0.0, static_cast<double>(step) - static_cast<double>(o.distill_steps_per_iter) *
                                             (std::log2(static_cast<double>(o.start_scales)) - 1));
    const auto sub_stage =
        static_cast<int64_t>(std::floor(sub / static_cast<double>(o.distill_steps_per_iter * 2)));
    const int64_t sub_scales =
        std::max<int64_t>(sub_stage >= 62 ? 0 : 2 / (int64_t{1} << sub_stage), 1);
    return {1.0, n == 2 ? sub_scales : n};
  }
  throw ConfigError(str("`target_ema_mode` ", ema, " with `scale_mode` ", scale,
                        " is not a combination consistency_models has (fixed/fixed, "
                        "fixed/progressive, adaptive/progressive, fixed/progdist)"));
}

}  // namespace idiff
