// Sampling loops that replay one captured CUDA graph per step (the reference's
// p_sample_loop / ddim_sample_loop, improved_diffusion/gaussian_diffusion.py, with the
// launch overhead of ~1,000 small kernels per step removed).
//
// The shapes of a sampling loop are static, so one step (the model call, the update to
// x_{t-1} and the copy back into x) is captured once and replayed for every timestep; before
// each replay the timestep is written into a device tensor and the step's N(0, I) draw into
// a static buffer. The draw is made by the caller's generator in the same order as the
// eager loop (x_T, then one tensor per step; the model draws nothing in eval mode), so a
// seed gives the same samples either way. The first `eager_steps` steps run eagerly, which
// warms up what must not happen during capture (cuDNN autotuning, workspaces, the
// diffusion's coefficient tables on the device). The autocast weight cache is disabled
// during capture: cached casts would live in the graph's memory and be freed under it.
//
// On the CPU, or with cuda_graph = false, the same loop runs eagerly, step for step.
#pragma once

#include "idiff/diffusion/gaussian_diffusion.h"

namespace idiff {

enum class SamplerKind { Ancestral, Ddim };

struct GraphSampleOptions {
  SamplerKind kind = SamplerKind::Ancestral;
  double eta = 0.0;         // DDIM only
  bool cuda_graph = true;   // capture on CUDA devices; the CPU always runs eagerly
  int64_t eager_steps = 2;  // steps run before capture (at least 1 when capturing)
  // Runs the graph path's loop on static buffers without capturing (any device): how the
  // tests check that loop on the CPU.
  bool static_buffers = false;
};

// p_sample_loop (or ddim_sample_loop with fast.eta) over `shape`; on_step as in the
// progressive loops. With a graph, the SampleStep tensors are the graph's buffers: valid
// during the callback only (clone them to keep them).
at::Tensor sample_loop_graphed(const GaussianDiffusion& diffusion, const ModelFn& model,
                               at::IntArrayRef shape, const SampleOptions& options,
                               const GraphSampleOptions& fast, const StepCallback& on_step = {});

// True when this build can capture CUDA graphs (a CUDA LibTorch).
bool cuda_graphs_available();

}  // namespace idiff
