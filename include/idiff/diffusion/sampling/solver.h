// Solvers of the sampling engine: step strategies that one loop drives (sample_loop.h).
//
// A solver walks a step schedule (step_schedule.h). Everything that changes from step to
// step is a row of numbers (the coefficients()), handed to step() as a tensor on the
// sample's device, and whatever history a multistep method keeps lives in buffers made
// once by reset(): a step is then the same tensor program every time, so the loop can run
// it eagerly or capture it once in a CUDA graph and replay it with the next row. Steps of
// a different shape (Heun's last, one-call step) report another variant(); each variant
// is captured once.
//
// The samplers by name, their help and the settings each reads: sampler_registry.h. All but
// ddpm are deterministic unless they say otherwise (ddim with eta > 0, dpmpp_2m_sde, euler_a
// draw one N(0, I) tensor per step).
#pragma once

#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/sampling/denoiser.h"
#include "idiff/diffusion/sampling/step_schedule.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

namespace idiff {

class Solver {
 public:
  virtual ~Solver() = default;

  virtual std::string name() const = 0;
  int64_t num_steps() const { return schedule_.num_steps(); }
  const StepSchedule& schedule() const { return schedule_; }
  // [num_steps, K] float64 on the CPU: row i is what step i needs.
  virtual at::Tensor coefficients() const = 0;
  // Steps of one variant run one tensor program (one CUDA graph each).
  virtual int64_t variant(int64_t i) const { return 0; }
  virtual int64_t model_calls(int64_t i) const { return 1; }
  // Whether every step takes an N(0, I) draw shaped like x (drawn by the loop).
  virtual bool draws_noise() const { return false; }
  // Whether a step builds on earlier steps (a multistep method's history): such a solver
  // must walk its steps in order, once (repaint.h).
  virtual bool keeps_history() const { return false; }
  // Makes the history buffers for samples like x (zeroed).
  virtual void reset(const at::Tensor& x) {}
  // x at level i -> x at level i + 1, with the step's x_0 prediction. row: coefficients()[i]
  // on x's device and dtype; noise: undefined unless draws_noise().
  virtual SampleOutput step(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
                            int64_t variant) = 0;

  int64_t total_model_calls() const;

 protected:
  explicit Solver(StepSchedule schedule) : schedule_(std::move(schedule)) {}

 private:
  StepSchedule schedule_;
};

struct SolverOptions {
  std::string name = "ddpm";
  double eta = 0.0;                   // ddim: the noise scale of Song et al. eq. 16
  int64_t order = 2;                  // unipc: 1-3
  std::string unipc_variant = "bh2";  // bh1 (small step counts) or bh2
  // Multistep solvers take first-order last steps (second-order second-last for 3M) below
  // 15 steps, as diffusers does; the step to sigma 0 is always first order.
  bool lower_order_final = true;
  // heun, dpm: Karras et al.'s stochastic churn (Alg. 2) at levels sigma_k in
  // [s_tmin, s_tmax] (linear_multistep.h, Churn); s_churn 0: none.
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
};

// A solver of `options.name` (a row of sampler_registry.h) over `schedule` for the full (not
// respaced) process `params`. A row with a reference sampler (ddpm, ddim) on integer
// timesteps runs the reference's p_sample / ddim_sample on a SpacedDiffusion of those steps
// (bit for bit the reference), and needs them to end at sigma 0; on fractional timesteps
// ddim runs its engine formula on the continuous schedule. Unknown names and settings out
// of range are ConfigErrors naming the flag.
std::unique_ptr<Solver> make_solver(const SolverOptions& options, const DiffusionParams& params,
                                    const StepSchedule& schedule, const ModelFn& model,
                                    const DenoiserOptions& denoiser);

// The reference's own samplers over the steps of `diffusion` (already respaced or not):
// p_sample (ddim = false) or ddim_sample with eta, every step, guided by cond_fn if given.
std::unique_ptr<Solver> make_reference_solver(const GaussianDiffusion& diffusion,
                                              const ModelFn& model, bool ddim, double eta,
                                              bool clip_denoised, const DenoisedFn& denoised_fn,
                                              const CondFn& cond_fn = {});

// The same over the continuous schedule `ns` (any model family: a Karras denoiser's levels
// with denoiser.karras set), engine solvers only: a row without one is a ConfigError.
std::unique_ptr<Solver> make_engine_solver(const SolverOptions& options, const NoiseSchedule& ns,
                                           const StepSchedule& schedule, const ModelFn& model,
                                           const DenoiserOptions& denoiser);

// The continuous schedule of a full process.
NoiseSchedule noise_schedule_of(const DiffusionParams& params);

}  // namespace idiff
