// The step shared by the multistep solvers whose update is linear in x, the recent x_0
// predictions and a noise draw: DDIM, Euler, Euler ancestral, DPM-Solver++ (2M, 3M, 2M
// SDE) and UniPC. Each method is only its coefficients (a LinearPlan made on the host in
// float64); one step is
//   m      = D(x, level i)                       the model call (denoiser.h)
//   h      = [m, h_0, h_1, ...]                  the x_0 history, newest first
//   x_c    = c_x x + c_last last + sum_k c_k h_k  UniPC's corrector (else x_c = x);
//   last   = x_c
//   x_next = p_x x_c + sum_k p_k h_k + p_z z
#pragma once

#include "idiff/diffusion/sampling/solver.h"

#include <vector>

namespace idiff {

struct LinearStep {
  double x = 0.0;
  std::vector<double> h;  // coefficients of h_0 (this step's x_0), h_1, ... (history length)
  double noise = 0.0;
  // The corrector (LinearPlan::corrector): by default the identity x_c = x.
  double corr_x = 1.0, corr_last = 0.0;
  std::vector<double> corr_h;
};

struct LinearPlan {
  int64_t history = 1;     // x_0 predictions kept
  bool corrector = false;  // UniPC
  bool noise = false;      // a draw per step
  std::vector<LinearStep> steps;
};

// The levels of a schedule on the continuous schedule.
std::vector<NoiseLevel> levels_of(const NoiseSchedule& ns, const StepSchedule& schedule);

// The coefficients of each method (ddim.cpp, dpm_solver_pp.cpp, unipc.cpp).
LinearPlan ddim_plan(const std::vector<NoiseLevel>& levels, double eta);
LinearPlan euler_ancestral_plan(const std::vector<NoiseLevel>& levels);
LinearPlan dpm_solver_pp_plan(const std::vector<NoiseLevel>& levels, int64_t order, bool sde,
                              bool lower_order_final);
LinearPlan unipc_plan(const std::vector<NoiseLevel>& levels, int64_t order, bool bh2,
                      bool lower_order_final);
// consistency.cpp: sigma_min is the lowest level of the schedule (sigma_k at t = 0).
LinearPlan consistency_plan(const std::vector<NoiseLevel>& levels, double sigma_min);

// Karras et al.'s stochastic churn (Alg. 2): at a level k_i within [s_tmin, s_tmax], the
// sample is first noised up to k_hat = k_i (1 + gamma), gamma = min(s_churn / N, sqrt 2 - 1),
// by s_noise sqrt(k_hat^2 - k_i^2) z.
struct Churn {
  NoiseLevel hat;      // the level the model is called at (level i without churn)
  double noise = 0.0;  // the scale of z in x_ve (0: no churn at this step)
};
Churn churn_at(const NoiseSchedule& ns, const NoiseLevel& level, int64_t num_steps,
               const SolverOptions& options);
// Whether any step churns (then every step takes a draw, as the reference's loop does).
bool any_churn(const std::vector<Churn>& churn);

// Not linear in the predictions, two calls a step: Heun (heun.cpp) and the midpoint method
// of consistency_models' sample_dpm (karras_dpm.cpp), both with the churn above.
std::unique_ptr<Solver> make_heun_solver(const StepSchedule& schedule,
                                         const std::vector<NoiseLevel>& levels, Denoiser denoiser,
                                         const NoiseSchedule& ns, const SolverOptions& options);
std::unique_ptr<Solver> make_karras_dpm_solver(const StepSchedule& schedule,
                                               const std::vector<NoiseLevel>& levels,
                                               Denoiser denoiser, const NoiseSchedule& ns,
                                               const SolverOptions& options);

std::unique_ptr<Solver> make_linear_solver(std::string name, const StepSchedule& schedule,
                                           const std::vector<NoiseLevel>& levels, Denoiser denoiser,
                                           LinearPlan plan);

// The order a multistep method of `order` uses at step i of n with `warm` earlier steps
// available (diffusers' rule: lower orders while warming up; with lower_order_final below 15
// steps, first order last and at most second order second-last; first order into sigma 0).
int64_t multistep_order(int64_t order, int64_t i, int64_t n, bool lower_order_final,
                        bool ends_clean);

}  // namespace idiff
