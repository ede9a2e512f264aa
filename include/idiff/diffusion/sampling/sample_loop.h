// The one sampling loop: x_T (or a partly noised image), then solver steps down the step
// schedule (solver.h), each run eagerly or replayed from a captured CUDA graph. The
// reference's p_sample_loop and ddim_sample_loop (improved_diffusion/gaussian_diffusion.py)
// are this loop with the reference's solvers.
//
// CUDA graphs: the shapes of a loop are static, so each step variant (solver.h) is captured
// once and replayed for every step; before a replay the step's coefficient row, x and its
// N(0, I) draw are written into the graph's static buffers. Draws come from the caller's
// generator in the same order either way (x_T, then one tensor per step that takes one;
// the model draws nothing in eval mode), so a seed gives the same samples. The first
// `eager_steps` steps run eagerly, which warms up what must not happen during capture
// (cuDNN autotuning, workspaces, coefficient tables on the device); the autocast weight
// cache is off during capture (cached casts would live in the graph's memory).
#pragma once

#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/sampling/solver.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <functional>
#include <optional>

namespace idiff {

// One step of a sampling loop, as the progressive forms report it.
struct SampleStep {
  int64_t index = 0;       // 0 .. num_steps-1, in loop order
  int64_t num_steps = 0;   // the solver's steps
  double t = 0;            // the timestep of the original process just sampled from
  at::Tensor sample;       // the state after the step; after the last, the final sample
  at::Tensor pred_xstart;  // the x_0 prediction of this step
};
using StepCallback = std::function<void(const SampleStep&)>;

struct SampleOptions {
  at::Tensor noise;           // x_T to start from; undefined: drawn from N(0, I)
  bool clip_denoised = true;  // the reference loops: clip x_0 predictions to [-1, 1]
  DenoisedFn denoised_fn;     // the reference loops: applied to x_0 before clipping
  CondFn cond_fn;             // the reference loops: classifier guidance (guided-diffusion's)
  StepCallback progress;      // optional, called after every step (progress bars)
  // Every random draw (x_T, per-step noise) comes from this generator; none: the global
  // default generator of the device. A CPU generator also works for CUDA samples: the
  // numbers are drawn on the CPU and copied, so a seed gives the same noise on any device.
  std::optional<at::Generator> generator;
  // Set: every N(0, I) tensor (x_T, then each step's) is taken from it instead, e.g. noise
  // saved by a reference run, or per-image streams.
  std::function<at::Tensor(at::IntArrayRef shape, const at::TensorOptions& options)> draw;
  // Where x_T is drawn when noise is not given; none: the device of `noise`, else the CPU.
  std::optional<c10::Device> device;
};

struct LoopOptions {
  bool cuda_graph = true;   // capture on CUDA devices; the CPU always runs eagerly
  int64_t eager_steps = 2;  // steps run before capture (at least 1 when capturing)
  // Runs the graph path's static buffers without capturing (any device): how the tests
  // check that path on the CPU.
  bool static_buffers = false;
};

// x_T of a sampling loop: options.noise (moved to options.device when given), else drawn
// by draw_normal on options.device (the CPU when none). Error when the shapes differ.
at::Tensor initial_noise(at::IntArrayRef shape, const SampleOptions& options);

// Runs `solver` from x (the state at its schedule's first level) to its last level, under
// no_grad. on_step and options.progress are called after every step; with a graph the
// SampleStep tensors are the graph's buffers, valid during the callback only.
at::Tensor run_sampler(Solver& solver, const at::Tensor& x, const SampleOptions& options,
                       const LoopOptions& loop = {}, const StepCallback& on_step = {});

// The reference's loops over every step of `diffusion` (respaced or not), from
// initial_noise(shape, options): ancestral sampling, and DDIM with eta.
at::Tensor p_sample_loop(const GaussianDiffusion& diffusion, const ModelFn& model,
                         at::IntArrayRef shape, const SampleOptions& options = {},
                         const StepCallback& on_step = {}, const LoopOptions& loop = {});
at::Tensor ddim_sample_loop(const GaussianDiffusion& diffusion, const ModelFn& model,
                            at::IntArrayRef shape, const SampleOptions& options = {},
                            double eta = 0.0, const StepCallback& on_step = {},
                            const LoopOptions& loop = {});

// True when this build can capture CUDA graphs (a CUDA LibTorch).
bool cuda_graphs_available();

}  // namespace idiff
