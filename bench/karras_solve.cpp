#include "karras_solve.h"

#include "idiff/common/error.h"
#include "idiff/drivers/load_model.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/inspect/infer_config.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

namespace idiff {

BenchModel load_bench_model(const std::string& path, int64_t num_heads, int64_t num_head_channels,
                            bool karras) {
  const InferredModel inferred = infer_model_config(load_tensor_file(path));
  IDIFF_REQUIRE(inferred.is_unet && !inferred.super_res, ConfigError, path,
                ": not a UNet checkpoint");
  BenchModel b;
  b.config = inferred.config;
  b.config.num_heads = num_heads;
  b.config.num_head_channels = num_head_channels;
  b.model = load_model(b.config, false, path, c10::Device(c10::kCPU), karras);
  b.fn = [m = b.model](const at::Tensor& x, const at::Tensor& t) mutable {
    return m->forward(x, t);
  };
  return b;
}

KarrasRun solve_karras(const KarrasParams& params, const ModelFn& fn, const at::Tensor& unit,
                       const KarrasSampleOptions& options, uint64_t seed) {
  const auto solver = make_karras_solver(params, fn, options);
  SampleOptions s;
  s.generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto t0 = std::chrono::steady_clock::now();
  const at::Tensor x =
      run_sampler(*solver, unit * karras_noise_scale(params, *solver), s).clamp(-1, 1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {x, secs / static_cast<double>(unit.size(0)), solver->total_model_calls()};
}

int64_t steps_for(const std::string& sampler, int64_t nfe) {
  if (sampler == "heun") return (nfe + 1) / 2;
  if (sampler == "dpm") return nfe / 2;
  return nfe;
}

double rms(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).mean().sqrt().item<double>();
}

}  // namespace idiff
