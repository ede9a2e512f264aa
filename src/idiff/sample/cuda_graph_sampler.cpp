#include "idiff/sample/cuda_graph_sampler.h"

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

using StepFn =
    std::function<SampleOutput(const at::Tensor& x, const at::Tensor& t, const at::Tensor& noise)>;

// One sampling step on static buffers: x (updated in place to x_{t-1}), t and the noise are
// written before each run; captured once and replayed on CUDA, or run eagerly on the same
// buffers (the CPU path of the tests).
class StaticStep {
 public:
  StaticStep(StepFn step, const at::Tensor& x, const at::Tensor& t, const at::Tensor& noise,
             bool capture)
      : step_(std::move(step)), x_(x.clone()), t_(t.clone()), noise_(noise.clone()) {
    if (capture) capture_graph();
  }

  SampleOutput run(const at::Tensor& x, int64_t t, const at::Tensor& noise) {
    if (!x.is_same(x_)) x_.copy_(x);
    t_.fill_(t);
    noise_.copy_(noise);
#ifdef IDIFF_WITH_CUDA
    if (graph_) {
      graph_->replay();
      return {x_, pred_xstart_};
    }
#endif
    const SampleOutput out = step_(x_, t_, noise_);
    x_.copy_(out.sample);
    pred_xstart_ = out.pred_xstart;
    return {x_, pred_xstart_};
  }

 private:
  void capture_graph() {
#ifdef IDIFF_WITH_CUDA
    const c10::cuda::CUDAGuard device_guard(x_.device());
    // Capture on a side stream that first waits for the work queued so far.
    const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
    // One side stream per device for every capture: a library's per-stream workspace (the
    // cuBLAS one) is then made in one graph's memory pool only, not in one per stream.
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
        const SampleOutput out = step_(x_, t_, noise_);
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
          str("capturing the sampling step in a CUDA graph failed (--cuda_graph False samples "
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
  at::Tensor x_, t_, noise_, pred_xstart_;
#ifdef IDIFF_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
#endif
};

}  // namespace

bool cuda_graphs_available() {
#ifdef IDIFF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor sample_loop_graphed(const GaussianDiffusion& diffusion, const ModelFn& model,
                               at::IntArrayRef shape, const SampleOptions& options,
                               const GraphSampleOptions& fast, const StepCallback& on_step) {
  IDIFF_REQUIRE(fast.eta >= 0.0, ConfigError, "DDIM eta must be >= 0, got ", fast.eta);
  const c10::NoGradGuard no_grad;
  at::Tensor img = initial_noise(shape, options);
  const bool capture = fast.cuda_graph && img.is_cuda() && cuda_graphs_available();
  if (!capture && !fast.static_buffers) {
    SampleOptions from_img = options;
    from_img.noise = img;
    return fast.kind == SamplerKind::Ddim
               ? diffusion.ddim_sample_loop_progressive(model, shape, from_img, fast.eta, on_step)
               : diffusion.p_sample_loop_progressive(model, shape, from_img, on_step);
  }
  const int64_t n = diffusion.num_timesteps();
  const int64_t eager = std::max<int64_t>(capture ? 1 : 0, fast.eager_steps);

  const StepFn step = [&](const at::Tensor& x, const at::Tensor& t, const at::Tensor& noise) {
    return fast.kind == SamplerKind::Ddim
               ? diffusion.ddim_sample_from_noise(model, x, t, noise, options.clip_denoised,
                                                  options.denoised_fn, fast.eta)
               : diffusion.p_sample_from_noise(model, x, t, noise, options.clip_denoised,
                                               options.denoised_fn);
  };
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(img.device());
  std::unique_ptr<StaticStep> static_step;
  for (int64_t i = n - 1, k = 0; i >= 0; --i, ++k) {
    SampleOutput out;
    const at::Tensor t = at::full({img.size(0)}, i, long_opts);
    if (k < eager) {
      // The eager loops' own step: the noise is drawn after the model call.
      out = fast.kind == SamplerKind::Ddim
                ? diffusion.ddim_sample(model, img, t, options.clip_denoised, options.denoised_fn,
                                        fast.eta, options.generator)
                : diffusion.p_sample(model, img, t, options.clip_denoised, options.denoised_fn,
                                     options.generator);
    } else {
      // Drawn before the step: the same numbers, as the model draws none in eval mode.
      const at::Tensor noise = draw_normal(img.sizes(), img.options(), options.generator);
      if (!static_step) static_step = std::make_unique<StaticStep>(step, img, t, noise, capture);
      out = static_step->run(img, i, noise);
    }
    img = out.sample;
    if (on_step || options.progress) {
      const SampleStep info{n - 1 - i, n, i, out.sample, out.pred_xstart};
      if (on_step) on_step(info);
      if (options.progress) options.progress(info);
    }
  }
  return img;
}

}  // namespace idiff
