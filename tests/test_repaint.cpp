// RePaint (repaint.h): its path through the levels and its samples against diffusers'
// RePaintScheduler given the same draws (tests/py/diffusers_repaint.py), the one-step rule,
// and `idiff edit` with an improved-diffusion model end to end.
#include "test_io_util.h"

#include "idiff/data/image_grid.h"
#include "idiff/diffusion/sampling/repaint.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/io/npz.h"
#include "idiff/io/safetensors.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace idiff {
namespace {

TEST(Repaint, PathWalksDownAndBackUpAsRePaintDoes) {
  // N = 7, jumps of 3 resampled twice: down to level 4, back to 1, down to 7.
  const std::vector<int64_t> want = {0, 1, 2, 3, 4, 3, 2, 1, 2, 3, 4, 5, 6, 7, 6, 5, 4, 5, 6, 7};
  EXPECT_EQ(repaint_path(7, {3, 2}), want);
  const std::vector<int64_t> straight = repaint_path(5, {3, 1});
  EXPECT_EQ(straight, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(test::error_of([] {
              repaint_path(5, {0, 2});
            }),
            "`jump_length` must be at least 1, got 0");
  EXPECT_NE(test::error_of([] {
              repaint_path(5, {3, 0});
            }).find("`resample_jumps`"),
            std::string::npos);
}

// The toy model of the script, an inner DDIM over every step of its 20-step process.
std::unique_ptr<Solver> toy_ddim(const DiffusionParams& params, double eta) {
  const ModelFn model = [](const at::Tensor& x, const at::Tensor& t) {
    return 0.5 * at::tanh(x) * std::cos(t[0].item<double>() / 7.0) + 0.2 * x;
  };
  SolverOptions o;
  o.name = "ddim";
  o.eta = eta;
  DenoiserOptions none;
  none.threshold = Threshold::None;
  return make_solver(o, params, respacing_schedule(20, ""), model, none);
}

TEST(Repaint, EqualsDiffusersGivenTheSameDraws) {
  test::TempDir dir;
  const auto r = test::run_python_script("diffusers_repaint.py", {dir.file("d.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const TensorMap d = read_safetensors(dir.file("d.safetensors"));
  DiffusionParams params;
  const at::Tensor betas = d.at("betas");
  for (int64_t i = 0; i < betas.numel(); ++i) params.betas.push_back(betas[i].item<double>());
  params.model_var_type = ModelVarType::FixedSmall;
  const NoiseSchedule ns = noise_schedule_of(params);
  const at::Tensor image =
      (0.8 * at::sin(0.23 * at::arange(96, at::kDouble))).view({2, 3, 4, 4}).to(at::kFloat);
  at::Tensor mask = at::zeros({1, 1, 4, 4});
  mask.narrow(3, 0, 2).fill_(1);
  for (const std::string name : {"eta0", "eta1"}) {
    SCOPED_TRACE(name);
    auto solver = make_repaint_solver(toy_ddim(params, name == "eta1" ? 1.0 : 0.0), ns,
                                      inpaint_task(image, mask), {3, 3});
    // Its path is diffusers' timesteps: level 20 - t after each entry.
    const at::Tensor timesteps = d.at(name + ".timesteps");
    ASSERT_EQ(solver->num_steps(), timesteps.numel());
    EXPECT_EQ(solver->total_model_calls(), 20 + 2 * 3 * 6);
    const at::Tensor draws = d.at(name + ".draws").to(at::kFloat);
    auto next = std::make_shared<int64_t>(1);
    SampleOptions opts;
    opts.draw = [draws, next](at::IntArrayRef, const at::TensorOptions&) {
      return draws[(*next)++];
    };
    const at::Tensor got = run_sampler(*solver, draws[0], opts);
    EXPECT_EQ(*next, draws.size(0));
    // The CUDA-graph path (a static buffer per variant), run on the CPU: the same samples.
    *next = 1;
    LoopOptions graphs;
    graphs.static_buffers = true;
    EXPECT_TRUE(at::allclose(run_sampler(*solver, draws[0], opts, graphs), got, 1e-5, 1e-6));
    const at::Tensor want = d.at(name + ".sample").to(at::kFloat);
    EXPECT_LT((got - want).abs().max().item<double>() / want.abs().max().item<double>(), 1e-4)
        << (got - want).abs().max().item<double>();
    // The kept half is the image, the other half what the model made of the noise.
    EXPECT_LT((got - image).mul(mask).abs().max().item<double>(), 1e-5);
    EXPECT_GT((got - image).mul(1 - mask).abs().max().item<double>(), 0.1);
  }
}

// Colorize and superres through RePaint: the final sample keeps the image's luminance and
// its 8x8 patch means exactly (the last level is clean), the rest comes from the model.
TEST(Repaint, ColorizeAndSuperresKeepTheirKnownParts) {
  DiffusionParams params;
  params.betas = std::vector<double>(20, 0.05);
  params.model_var_type = ModelVarType::FixedSmall;
  at::manual_seed(3);
  const at::Tensor image = at::rand({2, 3, 16, 16}) * 2 - 1;
  const at::Tensor grey = at::tensor({0.2989, 0.5870, 0.1140}).view({1, 3, 1, 1});
  const auto luma = [&](const at::Tensor& x) { return (x * grey).sum(1); };
  const auto means = [](const at::Tensor& x) { return at::avg_pool2d(x, 8); };
  for (const std::string name : {"colorize", "superres"}) {
    SCOPED_TRACE(name);
    auto solver = make_repaint_solver(toy_ddim(params, 1.0), noise_schedule_of(params),
                                      make_edit_task(name, image, at::Tensor()), {3, 2});
    SampleOptions opts;
    opts.generator = at::make_generator<at::CPUGeneratorImpl>(1);
    const at::Tensor x = run_sampler(*solver, at::randn({2, 3, 16, 16}), opts);
    const at::Tensor got = name == "colorize" ? luma(x) : means(x);
    const at::Tensor want = name == "colorize" ? luma(image) : means(image);
    EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
    EXPECT_GT((x - image).abs().mean().item<double>(), 0.1);
  }
}

TEST(Repaint, MultistepSolversGoingBackUpAreRefused) {
  DiffusionParams params;
  params.betas = std::vector<double>(20, 0.05);
  SolverOptions o;
  o.name = "dpmpp_2m";
  DenoiserOptions none;
  none.threshold = Threshold::None;
  const ModelFn model = [](const at::Tensor& x, const at::Tensor&) { return 0.1 * x; };
  const EditTask task = inpaint_task(at::zeros({1, 1, 4, 4}), at::ones({1, 1, 4, 4}));
  const auto make = [&](int64_t jumps) {
    return make_repaint_solver(make_solver(o, params, respacing_schedule(20, ""), model, none),
                               noise_schedule_of(params), task, {5, jumps});
  };
  EXPECT_NE(test::error_of([&] { make(2); }).find("dpmpp_2m builds on earlier steps"),
            std::string::npos);
  EXPECT_EQ(make(1)->total_model_calls(), 20);  // replacement alone walks down once
}

// `idiff edit` with improved-diffusion's tiny model: RePaint's defaults announced, the kept
// pixels kept, the rest filled; a multistep sampler with jumps and jumps on a consistency
// model are one-line errors.
TEST(RepaintCli, EditInpaintsWithAnImprovedDiffusionModel) {
  test::TempDir dir;
  at::manual_seed(7);
  const at::Tensor image = at::randint(0, 256, {32, 32, 3}, at::kByte);
  at::Tensor mask = at::full({32, 32, 3}, 255, at::kByte);
  mask.narrow(0, 0, 16).fill_(0);  // fill the top half
  const std::string image_png = dir.file("image.png"), mask_png = dir.file("mask.png");
  write_png(image_png, image);
  write_png(mask_png, mask);
  const std::string out = dir.file("edit");
  std::vector<std::string> args = {"edit", test::data_path("unet_tiny.weights.safetensors")};
  for (const std::string& a : test::fixture_flags("unet_tiny")) args.push_back(a);
  for (const std::string a : {"--task", "inpaint", "--image", image_png.c_str(), "--mask",
                              mask_png.c_str(), "--num_samples", "2", "--seed", "3", "--log_dir",
                              out.c_str(), "--timestep_respacing", "20"}) {
    args.push_back(a);
  }
  const test::RunResult r = test::run_idiff(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 20 steps; after the last (t = 0, the only jump point below 20 - 10) back up 10 levels and
  // down again, 9 times: 110 calls.
  EXPECT_NE(r.out.find("ddpm with RePaint, 200 steps (110 model calls)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("defaults for RePaint: --sampler ddpm --jump_length 10 --resample_jumps 10"),
            std::string::npos)
      << r.out;
  const at::Tensor samples = read_npz(out + "/samples_2x32x32x3.npz").at("arr_0");
  const at::Tensor keep = (mask == 255);
  for (int64_t i = 0; i < 2; ++i) {
    const at::Tensor diff = (samples[i].to(at::kInt) - image.to(at::kInt)).abs();
    EXPECT_LE(diff.masked_select(keep).max().item<int>(), 1);
    EXPECT_GT(diff.masked_select(~keep).to(at::kFloat).mean().item<float>(), 5);
  }
  args.resize(args.size() - 2);
  for (const std::string a :
       {"--sampler", "unipc", "--steps", "10", "--resample_jumps", "2", "--jump_length", "3"})
    args.push_back(a);
  const test::RunResult bad = test::run_idiff(args);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--resample_jumps 2: the sampler unipc builds on earlier steps"),
            std::string::npos)
      << bad.err;
}

}  // namespace
}  // namespace idiff
