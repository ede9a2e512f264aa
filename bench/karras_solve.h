// What the Karras benches share (karras_bench.cpp, cm_bench.cpp): loading an EDM or
// consistency model by its weights' shapes, solving fixed unit noise with one sampler of
// karras_sample, and the RMS distance of two sample sets.
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/sampling/karras_sample.h"
#include "idiff/model/unet.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace idiff {

struct BenchModel {
  UNetModel model{nullptr};
  ModelConfig config;
  ModelFn fn;
};

// The checkpoint at `path` (consistency_models' layout; karras false: an improved-/guided-
// diffusion one), its configuration inferred from the weights but for the heads, on the CPU.
BenchModel load_bench_model(const std::string& path, int64_t num_heads, int64_t num_head_channels,
                            bool karras = true);

struct KarrasRun {
  at::Tensor x;  // the samples, clamped to [-1, 1]
  double seconds_per_image = 0;
  int64_t calls = 0;  // model calls per image
};

// x_T = unit * sigma_max (in the loop's state) solved by `options`; `seed` draws the noise of
// stochastic samplers (multistep).
KarrasRun solve_karras(const KarrasParams& params, const ModelFn& fn, const at::Tensor& unit,
                       const KarrasSampleOptions& options, uint64_t seed = 2);

// Steps of `sampler` that spend at most `nfe` model calls (Heun: 2 a step, 1 the last;
// dpm: 2 a step; the others 1).
int64_t steps_for(const std::string& sampler, int64_t nfe);

double rms(const at::Tensor& a, const at::Tensor& b);

}  // namespace idiff
