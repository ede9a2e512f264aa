// Options and step records of the sampling loops (reference: improved_diffusion/
// gaussian_diffusion.py, p_sample_loop[_progressive], ddim_sample_loop[_progressive]). The
// loops themselves are GaussianDiffusion members, defined in sampling.cpp.
#pragma once

#include "idiff/diffusion/model_fn.h"

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
  int64_t num_steps = 0;   // the diffusion's num_timesteps()
  int64_t t = 0;           // the (respaced) timestep just sampled from, num_steps-1 down to 0
  at::Tensor sample;       // x_{t-1} ([N, C, ...]); after the last step, the final sample
  at::Tensor pred_xstart;  // the x_0 prediction of this step
};
using StepCallback = std::function<void(const SampleStep&)>;

struct SampleOptions {
  at::Tensor noise;           // x_T to start from; undefined: drawn from N(0, I)
  bool clip_denoised = true;  // clip x_0 predictions to [-1, 1]
  DenoisedFn denoised_fn;     // optional, applied to x_0 predictions before clipping
  StepCallback progress;      // optional, called after every step (progress bars)
  // Every random draw (x_T, per-step noise) comes from this generator; none: the global
  // default generator of the device. A CPU generator also works for CUDA samples: the
  // numbers are drawn on the CPU and copied, so a seed gives the same noise on any device.
  std::optional<at::Generator> generator;
  // Where x_T is drawn when noise is not given; none: the device of `noise`, else the CPU.
  std::optional<c10::Device> device;
};

// N(0, I) noise of `shape` with `options`, drawn from `generator` (see SampleOptions).
at::Tensor draw_normal(at::IntArrayRef shape, const at::TensorOptions& options,
                       const std::optional<at::Generator>& generator);

// x_T of a sampling loop: options.noise (moved to options.device when given), else drawn
// by draw_normal on options.device (the CPU when none). Error when the shapes differ.
at::Tensor initial_noise(at::IntArrayRef shape, const SampleOptions& options);

}  // namespace idiff
