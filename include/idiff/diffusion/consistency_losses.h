// Consistency distillation and consistency training's loss (cm/karras_diffusion.py
// KarrasDenoiser.consistency_losses; Song et al. 2023, Alg. 2 and 3) and the schedule of its
// target EMA rate and number of scales (cm/script_util.py create_ema_and_scales_fn).
//
// For indices n drawn in [0, N - 1) of N Karras levels t_0 = sigma_max > ... > t_{N-1} =
// sigma_min: x_t = x_0 + t_n z, then one ODE step to t_{n+1} — the teacher's Heun step
// (distillation) or the Euler step with x_0 itself as the denoiser (training) — and the
// loss compares the student at (x_t, t_n) with the target network at (x_t2, t_{n+1}),
// weighted by the weight schedule at t_n. Both see the same dropout draw.
//
// Progressive distillation's loss (KarrasDenoiser.progdist_losses; Salimans & Ho 2022 with
// EDM's denoiser) is here too: its levels are the same Karras spacing.
#pragma once

#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/sampling/noise_levels.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>

namespace idiff {

// "l1, l2, l2-32, pseudo_huber, lpips".
const char* consistency_loss_norms();
// A ConfigError naming `loss_norm` unless it is one of them.
void check_consistency_loss_norm(const std::string& norm);

// What the loss compares the two x_0 with: a norm by name, and for lpips the network
// (model/lpips.h: [N] distances of images in [0, 1]), which the caller brings.
using PerceptualFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& y)>;
struct LossNorm {
  LossNorm(std::string name, PerceptualFn lpips = {})
      : name(std::move(name)), lpips(std::move(lpips)) {}
  LossNorm(const char* name) : LossNorm(std::string(name)) {}
  std::string name;
  PerceptualFn lpips;
};

// [N]: the loss' norm of distiller - target per image, before the weights (the mean over
// C, H, W of l1, l2, l2-32, pseudo_huber; lpips as consistency_losses below says).
at::Tensor consistency_norm(const at::Tensor& distiller, const at::Tensor& target,
                            const LossNorm& norm);

struct ConsistencyTerms {
  at::Tensor t, t2;      // [N] the levels t_n and t_{n+1}
  at::Tensor x_t, x_t2;  // [N, C, H, W]: the noised image and the ODE step's result
  at::Tensor distiller;  // the student's x_0 at (x_t, t)
  at::Tensor target;     // the target's x_0 at (x_t2, t2), no gradient
  at::Tensor loss;       // [N] mean over C, H, W of the norm, times the weight
};

// `student`, `target`: networks of consistency models (the boundary-condition scalings of
// `diffusion`); `teacher` (empty for consistency training) a network whose denoiser is
// `teacher_diffusion` (EDM scalings). indices: [N] int64 in [0, num_scales - 1); noise like
// x_start. loss_norm: one of consistency_loss_norms() (the reference's l2-32 resizes both
// x_0 to 32x32 bilinearly first; pseudo_huber is iCT's sqrt(d^2 + c^2) - c with
// c = 0.00054 sqrt(C H W), its mean taken over the image; lpips resizes images under 256
// pixels to 224 bilinearly and compares (x + 1) / 2, per image).
ConsistencyTerms consistency_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                    const ModelFn& target, const ModelFn& teacher,
                                    const KarrasDenoiser& teacher_diffusion,
                                    const at::Tensor& x_start, int64_t num_scales,
                                    const at::Tensor& indices, const at::Tensor& noise,
                                    const LossNorm& loss_norm);

// A teacher as a denoiser D(x, sigma) of variance-exploding noise levels: x [N, C, H, W] =
// x_0 + sigma z, sigma [N]; returns the x_0 estimate.
using DenoiseFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& sigma)>;
// The same with the teacher as a denoiser (empty: consistency training).
ConsistencyTerms consistency_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                    const ModelFn& target, const DenoiseFn& teacher,
                                    const at::Tensor& x_start, int64_t num_scales,
                                    const at::Tensor& indices, const at::Tensor& noise,
                                    const LossNorm& loss_norm);

// Progressive distillation (progdist_losses): for indices n in [0, N) of N + 1 Karras levels
// t_0 = sigma_max > ... > t_N = sigma_min, x_t = x_0 + t_n z; the teacher takes two Euler
// steps, t_n -> t_{n + 1/2} -> t_{n+1}, and the target is the x_0 whose single Euler step from
// (x_t, t_n) lands where those two did: x_t - t_n (x_{n+1} - x_t) / (t_{n+1} - t_n). The
// student (`diffusion`: EDM scalings) is compared with it by `loss_norm`, weighted at t_n.
// Returns t = t_n, t2 = t_{n+1}, x_t2 = the teacher's two-step result.
ConsistencyTerms progdist_losses(const KarrasDenoiser& diffusion, const ModelFn& student,
                                 const DenoiseFn& teacher, const at::Tensor& x_start,
                                 int64_t num_scales, const at::Tensor& indices,
                                 const at::Tensor& noise, const LossNorm& loss_norm);

// An improved-/guided-diffusion network as a denoiser of sigma levels (a teacher for
// consistency distillation): at sigma the input is x / sqrt(1 + sigma^2) (the VP state) and
// the network is called at the fractional timestep of that noise level (log-SNR
// interpolation between the schedule's integer steps, noise_levels.h); the x_0 it implies
// (epsilon or x_0 prediction; learned-variance channels dropped) is clipped to [-1, 1] with
// `clip`, as the reference samples. `schedule`: the teacher's (NoiseSchedule of its
// alphas_cumprod and rescale_timesteps).
DenoiseFn vp_denoiser(const ModelFn& net, const NoiseSchedule& schedule, bool predict_xstart,
                      bool learned_variance, bool clip);

// create_ema_and_scales_fn(...)(step): the target network's EMA rate and the number of
// scales N at a training step. target_ema_mode fixed|adaptive, scale_mode
// fixed|progressive|progdist (the combinations the reference has).
struct EmaAndScales {
  double target_ema = 0.0;
  int64_t scales = 0;
};
struct EmaScalesOptions {
  std::string target_ema_mode = "fixed";
  double start_ema = 0.0;
  std::string scale_mode = "fixed";
  int64_t start_scales = 40;
  int64_t end_scales = 40;
  int64_t total_steps = 600000;
  int64_t distill_steps_per_iter = 50000;
};
EmaAndScales ema_and_scales(const EmaScalesOptions& options, int64_t step);

}  // namespace idiff
