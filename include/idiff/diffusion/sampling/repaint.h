// RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
// Models", Alg. 1; diffusers' RePaintScheduler): editing with an improved-/guided-diffusion
// model and a one-step sampler of the engine. After each reverse step i -> i + 1 the known
// part of the image is put back, noised to the new level,
//   x_{i+1} = known part of (alpha_{i+1} image + sigma_{i+1} z), the rest of step(x_i),
// and every jump_length steps the sample goes back up jump_length levels by the forward
// process, q(x_hi | x_lo) = N(alpha_hi / alpha_lo x_lo, sigma_hi^2 - (alpha_hi / alpha_lo)^2
// sigma_lo^2), to be sampled again, resample_jumps times in all: the unknown part then
// harmonises with the known one. resample_jumps 1 is plain replacement.
//
// The known part is an EditTask's (karras_edit.h): a mask's pixels, an image's luminance, its
// 8x8 patch means. Each step takes one N(0, I) draw z, used both by the inner step and for
// the known part, as diffusers does: the two parts are complementary orthogonal projections,
// so what each takes of an isotropic z is independent of the other (exactly so for samplers
// whose draw enters additively: ddpm, ddim with eta, euler_a).
//
// The path through the levels is diffusers' set_timesteps(jump_length, jump_n_sample), in
// step indices; a step down runs the inner solver's step, a step up the forward process. The
// loop drives it like any solver (one row per step, two variants and the inner's), so it runs
// through CUDA graphs too.
#pragma once

#include "idiff/diffusion/sampling/karras_edit.h"
#include "idiff/diffusion/sampling/solver.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace idiff {

struct RepaintOptions {
  int64_t jump_length = 10;     // RePaint's j: steps taken down before going back up
  int64_t resample_jumps = 10;  // RePaint's r (diffusers' jump_n_sample): 1, no going back
};

// The level indices (0 = the first of the inner schedule, N = its end) visited from 0 to N
// for an inner schedule of N steps; neighbours differ by one. Bad options are ConfigErrors
// naming --jump_length and --resample_jumps.
std::vector<int64_t> repaint_path(int64_t num_steps, const RepaintOptions& options);

// The inner solver (its schedule on `ns`) walked along repaint_path with the known part of
// `task` put back after every step down. A ConfigError when the inner solver keeps a history
// of earlier steps (multistep methods) and the path goes back up.
std::unique_ptr<Solver> make_repaint_solver(std::unique_ptr<Solver> inner, const NoiseSchedule& ns,
                                            EditTask task, const RepaintOptions& options);

}  // namespace idiff
