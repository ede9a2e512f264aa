// Tests of the CUDA paths, ctest label `gpu`: each runs on a CUDA device and is skipped
// where there is none (ctest -L gpu on the GPU machine; bench/gpu_bench.sh runs them).
#include "test_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/guidance.h"
#include "idiff/drivers/load_model.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

namespace idiff {
namespace {

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
  for (const std::string name : {"ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc",
                                 "euler", "heun", "euler_a"}) {
    SolverOptions o;
    o.name = name;
    o.eta = 0.5;
    const StepSchedule s = name == "ddpm" ? respacing_schedule(1000, "6") : karras;
    const auto run = [&](bool graph) {
      auto solver = make_solver(o, params, s, fn, {});
      SampleOptions opts;
      opts.generator = at::make_generator<at::CPUGeneratorImpl>(3);
      opts.device = cuda;
      LoopOptions loop;
      loop.cuda_graph = graph;
      return run_sampler(*solver, initial_noise({4, 3, 32, 32}, opts), opts, loop).cpu();
    };
    const at::Tensor eager = run(false), graphed = run(true);
    EXPECT_TRUE(at::allclose(eager, graphed, 1e-5, 1e-5))
        << name << ": " << (eager - graphed).abs().max().item<float>();
  }
}

// guided-diffusion's --use_fp16 (and idiff's --use_bf16) on CUDA: the converted torso's
// output stays close to guided-diffusion's float32 numbers.
TEST(GpuAdm, Fp16AndBf16TorsosMatchGuidedDiffusion) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  test::TempDir dir;
  const auto meta = test::load_json("adm_tiny.json");
  ModelConfig m = test::model_config_from_flags(meta["flags"]);
  UNetModel model = create_model(m);
  test::set_formula_weights(*model, 21);
  save_tensor_file(dir.file("model.pt"), state_dict(*model));
  const TensorMap io = test::load_fixture("adm_tiny.io.safetensors");
  for (const auto& [dtype, tolerance] :
       {std::pair{at::kFloat, 1e-4}, std::pair{at::kHalf, 5e-3}, std::pair{at::kBFloat16, 3e-2}}) {
    m.use_fp16 = dtype == at::kHalf;
    m.use_bf16 = dtype == at::kBFloat16;
    UNetModel low = load_model(m, false, dir.file("model.pt"), cuda);
    torch::NoGradGuard no_grad;
    const at::Tensor out =
        low->forward(io.at("x").to(cuda), io.at("t").to(cuda), io.at("y").to(cuda)).cpu();
    EXPECT_CLOSE(out, io.at("out"), tolerance) << c10::toString(dtype);
  }
}

// Classifier guidance on CUDA (eager: the gradient is not captured) follows guided-diffusion's
// trajectory; classifier-free guidance replays in CUDA graphs like any model function.
TEST(GpuGuidance, ClassifierAndClassifierFreeGuidanceRunOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const c10::Device cuda(c10::kCUDA, 0);
  const auto flags = test::load_json("adm_tiny.json")["flags"];
  UNetModel model = create_model(test::model_config_from_flags(flags));
  test::set_formula_weights(*model, 21);
  model->to(cuda);
  model->eval();
  const auto cls_flags = test::load_json("adm_cls_tiny.json")["flags"];
  EncoderUNetModel classifier =
      create_classifier(test::classifier_config_from_flags(cls_flags), 64);
  test::set_formula_weights(*classifier, 22);
  classifier->to(cuda);
  classifier->eval();
  DiffusionConfig d = test::diffusion_config_from_flags(flags);
  d.timestep_respacing = "10";
  const SpacedDiffusion diffusion = create_gaussian_diffusion(d);
  const TensorMap io = test::load_fixture("adm_tiny.guided.safetensors");
  const at::Tensor y = io.at("y").to(cuda);
  const ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t, y);
  };
  c10::InferenceMode inference;
  const auto solver = make_reference_solver(
      diffusion, fn, false, 0.0, true, {},
      classifier_cond_fn(classifier, y, io.at("classifier_scale").item<double>()));
  const at::Tensor rows = solver->coefficients();
  at::Tensor x = io.at("x_T").to(cuda);
  for (int64_t i = 0; i < rows.size(0); ++i) {
    x = solver->step(x, rows[i].to(cuda, x.scalar_type()), io.at("step_noise")[i].to(cuda), 0)
            .sample;
  }
  EXPECT_CLOSE(x.cpu(), io.at("sample"), 1e-3);

  // Classifier-free guidance of a model with a null label, eager and graphed.
  UNetOptions o;
  o.model_channels = 32;
  o.num_res_blocks = 1;
  o.channel_mult = {1, 2};
  o.num_classes = kNumClasses;
  o.null_label = true;
  UNetModel cfg(o);
  cfg->to(cuda);
  cfg->eval();
  ModelKwargs kw;
  kw.y = at::tensor({1, 2, 3, 4}, at::kLong).to(cuda);
  const ModelFn guided = classifier_free_model_fn(cfg, kw, 3.0);
  SolverOptions so;
  so.name = "dpmpp_2m";
  DiffusionConfig plain;
  const DiffusionParams params = diffusion_params(plain);
  const StepSchedule karras = make_step_schedule(noise_schedule_of(params), "karras", 6);
  const auto run = [&](bool graph) {
    auto s = make_solver(so, params, karras, guided, {});
    SampleOptions opts;
    opts.generator = at::make_generator<at::CPUGeneratorImpl>(3);
    opts.device = cuda;
    LoopOptions loop;
    loop.cuda_graph = graph;
    return run_sampler(*s, initial_noise({4, 3, 32, 32}, opts), opts, loop).cpu();
  };
  EXPECT_TRUE(at::allclose(run(false), run(true), 1e-5, 1e-5));
}

}  // namespace
}  // namespace idiff
