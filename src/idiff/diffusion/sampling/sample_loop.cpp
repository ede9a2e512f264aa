#include "idiff/diffusion/sampling/sample_loop.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <map>
#include <memory>
#include <mutex>

#ifdef IDIFF_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace idiff {

at::Tensor initial_noise(at::IntArrayRef shape, const SampleOptions& options) {
  if (options.noise.defined()) {
    IDIFF_REQUIRE(options.noise.sizes() == shape, Error, "sampling: the starting noise is ",
                  options.noise.sizes(), " but the sample shape is ", shape);
    return options.device ? options.noise.to(*options.device) : options.noise;
  }
  IDIFF_REQUIRE(shape.size() >= 2, Error, "sampling: the sample shape must be [N, C, ...], got ",
                shape);
  const c10::Device device = options.device.value_or(c10::Device(c10::kCPU));
  const auto to = at::TensorOptions().dtype(at::kFloat).device(device);
  return options.draw ? options.draw(shape, to) : draw_normal(shape, to, options.generator);
}

bool cuda_graphs_available() {
#ifdef IDIFF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

namespace {

#ifdef IDIFF_WITH_CUDA
c10::cuda::CUDAStream capture_stream(c10::DeviceIndex device) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = streams.find(device);
  if (it == streams.end()) {
    it = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
  }
  return it->second;
}
#endif

using StepFn = std::function<SampleOutput(const at::Tensor& x, const at::Tensor& row,
                                          const at::Tensor& noise)>;

// One step variant on static buffers: x (updated in place), the coefficient row and the
// noise are written before each run; captured once and replayed on CUDA, or run eagerly on
// the same buffers (the CPU path of the tests).
class StaticStep {
 public:
  StaticStep(StepFn step, const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise,
             bool capture)
      : step_(std::move(step)), x_(x.clone()), row_(row.clone()) {
    if (noise.defined()) noise_ = noise.clone();
    if (capture) capture_graph();
  }

  SampleOutput run(const at::Tensor& x, const at::Tensor& row, const at::Tensor& noise) {
    if (!x.is_same(x_)) x_.copy_(x);
    row_.copy_(row);
    if (noise.defined()) noise_.copy_(noise);
#ifdef IDIFF_WITH_CUDA
    if (graph_) {
      graph_->replay();
      return {x_, pred_xstart_};
    }
#endif
    const SampleOutput out = step_(x_, row_, noise_);
    x_.copy_(out.sample);
    pred_xstart_ = out.pred_xstart;
    return {x_, pred_xstart_};
  }

 private:
  void capture_graph() {
#ifdef IDIFF_WITH_CUDA
    const c10::cuda::CUDAGuard device_guard(x_.device());
    // Capture on a side stream that first waits for the work queued so far. One side stream
    // per device for every capture: a library's per-stream workspace (the cuBLAS one) is
    // then made in one graph's memory pool only, not in one per stream.
    const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
    const c10::cuda::CUDAStream side = capture_stream(x_.device().index());
    at::cuda::CUDAEvent queued;
    queued.record(current);
    queued.block(side);
    graph_ = std::make_unique<at::cuda::CUDAGraph>();
    const bool cache = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
    try {
      const c10::cuda::CUDAStreamGuard stream_guard(side);
      graph_->capture_begin();
      try {
        const SampleOutput out = step_(x_, row_, noise_);
        x_.copy_(out.sample);
        pred_xstart_ = out.pred_xstart;  // lives in the graph's memory pool
      } catch (...) {
        try {
          graph_->capture_end();
        } catch (...) {
        }
        throw;
      }
      graph_->capture_end();
    } catch (const std::exception& e) {
      at::autocast::set_autocast_cache_enabled(cache);
      graph_.reset();
      throw Error(
          str("capturing the sampling step in a CUDA graph failed (`cuda_graph` False samples "
              "without graphs): ",
              e.what()));
    }
    at::autocast::set_autocast_cache_enabled(cache);
    at::cuda::CUDAEvent captured;
    captured.record(side);
    captured.block(current);
#else
    TORCH_CHECK(false, "this build of idiff has no CUDA graphs");
#endif
  }

  StepFn step_;
  at::Tensor x_, row_, noise_, pred_xstart_;
#ifdef IDIFF_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
#endif
};

}  // namespace

at::Tensor run_sampler(Solver& solver, const at::Tensor& x_start, const SampleOptions& options,
                       const LoopOptions& loop, const StepCallback& on_step) {
  const c10::NoGradGuard no_grad;
  at::Tensor x = x_start;
  const bool capture = loop.cuda_graph && x.is_cuda() && cuda_graphs_available();
  const bool buffered = capture || loop.static_buffers;
  const int64_t eager = std::max<int64_t>(capture ? 1 : 0, loop.eager_steps);
  const at::Tensor table = solver.coefficients().to(x.options());
  const int64_t n = solver.num_steps();
  solver.reset(x);
  std::map<int64_t, std::unique_ptr<StaticStep>> graphs;  // one per variant
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor row = table[i];
    at::Tensor noise;
    if (solver.draws_noise()) {
      noise = options.draw ? options.draw(x.sizes(), x.options()).to(x.options())
                           : draw_normal(x.sizes(), x.options(), options.generator);
    }
    const int64_t variant = solver.variant(i);
    SampleOutput out;
    if (!buffered || i < eager) {
      out = solver.step(x, row, noise, variant);
    } else {
      auto& g = graphs[variant];
      if (!g) {
        g = std::make_unique<StaticStep>(
            [&solver, variant](const at::Tensor& xs, const at::Tensor& r, const at::Tensor& z) {
              return solver.step(xs, r, z, variant);
            },
            x, row, noise, capture);
      }
      out = g->run(x, row, noise);
    }
    x = out.sample;
    if (on_step || options.progress) {
      const SampleStep info{i, n, solver.schedule().levels[static_cast<size_t>(i)], out.sample,
                            out.pred_xstart};
      if (on_step) on_step(info);
      if (options.progress) options.progress(info);
    }
  }
  return x;
}

at::Tensor p_sample_loop(const GaussianDiffusion& diffusion, const ModelFn& model,
                         at::IntArrayRef shape, const SampleOptions& options,
                         const StepCallback& on_step, const LoopOptions& loop) {
  const auto solver = make_reference_solver(diffusion, model, false, 0.0, options.clip_denoised,
                                            options.denoised_fn, options.cond_fn);
  return run_sampler(*solver, initial_noise(shape, options), options, loop, on_step);
}

at::Tensor ddim_sample_loop(const GaussianDiffusion& diffusion, const ModelFn& model,
                            at::IntArrayRef shape, const SampleOptions& options, double eta,
                            const StepCallback& on_step, const LoopOptions& loop) {
  const auto solver = make_reference_solver(diffusion, model, true, eta, options.clip_denoised,
                                            options.denoised_fn, options.cond_fn);
  return run_sampler(*solver, initial_noise(shape, options), options, loop, on_step);
}

}  // namespace idiff
