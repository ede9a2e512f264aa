// Tests of the CUDA paths, ctest label `gpu` (also test_gpu_train.cpp, test_gpu_cli.cpp):
// each runs on a CUDA device and is skipped where there is none (ctest -L gpu on the GPU
// machine; bench/gpu_bench.sh runs them before its table). Here: the sampling engine's
// CUDA graphs, guided-diffusion's fp16/bf16 torsos and guidance.
#include "test_adm_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/repaint.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/guided_models.h"
#include "idiff/drivers/load_model.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <string>
#include <utility>
#include <vector>

namespace idiff {
namespace {

// Four 32x32 images from the same seed on the GPU, through the eager loop or captured CUDA
// graphs, brought back to the CPU.
at::Tensor sample_on_cuda(Solver& solver, bool cuda_graph) {
  SampleOptions opts;
  opts.generator = at::make_generator<at::CPUGeneratorImpl>(3);
  opts.device = c10::Device(c10::kCUDA, 0);
  LoopOptions loop;
  loop.cuda_graph = cuda_graph;
  return run_sampler(solver, initial_noise({4, 3, 32, 32}, opts), opts, loop).cpu();
}

// Every solver of the sampling engine through the captured-graph loop equals the eager loop
// on the GPU (the tiny fixture UNet, the same generator).
TEST(GpuSampling, CudaGraphLoopRunsEverySolver) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  const auto meta = test::load_json("unet_tiny.json");
  UNetModel model = create_model(test::model_config_from_flags(meta["flags"]));
  load_state_dict(*model, test::load_fixture("unet_tiny.weights.safetensors"), "unet_tiny");
  model->to(cuda);
  model->eval();
  const ModelFn fn = [&model](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t);
  };
  const DiffusionParams params = diffusion_params(test::diffusion_config_from_flags(meta["flags"]));
  const StepSchedule karras = make_step_schedule(noise_schedule_of(params), "karras", 6);
  c10::InferenceMode inference;
  const StepSchedule respaced = respacing_schedule(1000, "6");
  // ddim twice: on respaced integer steps it is the reference's loop, on Karras levels the
  // engine's linear solver.
  const std::vector<std::pair<std::string, const StepSchedule*>> cases = {
      {"ddpm", &respaced},   {"ddim", &respaced},       {"ddim", &karras},  {"dpmpp_2m", &karras},
      {"dpmpp_3m", &karras}, {"dpmpp_2m_sde", &karras}, {"unipc", &karras}, {"euler", &karras},
      {"heun", &karras},     {"euler_a", &karras},      {"dpm", &karras},   {"multistep", &karras},
      {"progdist", &karras}};
  for (const auto& [name, schedule] : cases) {
    SolverOptions o;
    o.name = name;
    o.eta = 0.5;
    const StepSchedule& s = *schedule;
    const auto run = [&](bool graph) {
      return sample_on_cuda(*make_solver(o, params, s, fn, {}), graph);
    };
    const at::Tensor eager = run(false), graphed = run(true);
    EXPECT_TRUE(at::allclose(eager, graphed, 1e-5, 1e-5))
        << name << " on " << s.levels.size() - 1 << " steps"
        << (&s == &respaced ? " (respaced)" : " (karras)") << ": "
        << (eager - graphed).abs().max().item<float>();
  }
  // RePaint (repaint.h) around the reference's ddpm: steps down and up, each its graph.
  at::Tensor mask = at::zeros({1, 1, 32, 32}, at::TensorOptions().device(cuda));
  mask.narrow(3, 0, 16).fill_(1);
  const EditTask task = inpaint_task(at::zeros({1, 3, 32, 32}, mask.options()), mask);
  SolverOptions ddpm;
  const auto repaint = [&](bool graph) {
    return sample_on_cuda(*make_repaint_solver(make_solver(ddpm, params, respaced, fn, {}),
                                               noise_schedule_of(params), task, {2, 2}),
                          graph);
  };
  EXPECT_TRUE(at::allclose(repaint(false), repaint(true), 1e-5, 1e-5)) << "ddpm with RePaint";
}

// guided-diffusion's --use_fp16 (and idiff's --use_bf16) on CUDA: the converted torso's
// output stays close to guided-diffusion's float32 numbers.
TEST(GpuAdm, Fp16AndBf16TorsosMatchGuidedDiffusion) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const test::ExactFloat32 exact;  // the float32 run is checked to 1e-4
  test::expect_low_precision_torsos_match(c10::Device(c10::kCUDA, 0));
}

// Classifier guidance on CUDA (eager: the gradient is not captured) follows guided-diffusion's
// trajectory; classifier-free guidance replays in CUDA graphs like any model function.
TEST(GpuGuidance, ClassifierAndClassifierFreeGuidanceRunOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  const test::ExactFloat32 exact;  // compared with guided-diffusion's float32 numbers
  UNetModel model = test::adm_tiny_model();
  model->to(cuda);
  EncoderUNetModel classifier = test::adm_tiny_classifier();
  classifier->to(cuda);
  const TensorMap io = test::load_fixture("adm_tiny.guided.safetensors");
  const at::Tensor y = io.at("y").to(cuda);
  const ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t, y);
  };
  c10::InferenceMode inference;
  const at::Tensor x = test::adm_guided_trajectory(
      fn, classifier_cond_fn(classifier, y, io.at("classifier_scale").item<double>()), io, cuda);
  EXPECT_CLOSE(x, io.at("sample"), 1e-3);

  // Classifier-free guidance of a model with a null label, eager and graphed.
  UNetOptions o;
  o.model_channels = 32;
  o.num_res_blocks = 1;
  o.channel_mult = {1, 2};
  o.num_classes = kNumClasses;
  o.null_label = true;
  UNetModel cfg(o);
  test::randomize_parameters(
      cfg->parameters());  // the zero-initialised output would hide the model
  cfg->to(cuda);
  cfg->eval();
  ModelKwargs kw;
  kw.y = at::tensor({1, 2, 3, 4}, at::kLong).to(cuda);
  SolverOptions so;
  so.name = "dpmpp_2m";
  DiffusionConfig plain;
  const DiffusionParams params = diffusion_params(plain);
  const StepSchedule karras = make_step_schedule(noise_schedule_of(params), "karras", 6);
  const auto run = [&](bool graph, double scale = 3.0) {
    return sample_on_cuda(
        *make_solver(so, params, karras, classifier_free_model_fn(cfg, kw, scale), {}), graph);
  };
  const at::Tensor eager = run(false);
  EXPECT_TRUE(at::allclose(eager, run(true), 1e-5, 1e-5));
  // The guidance scale reaches the images (the model's output is not washed out).
  EXPECT_GT((eager - run(false, 1.0)).abs().max().item<float>(), 1e-3);
}

}  // namespace
}  // namespace idiff
