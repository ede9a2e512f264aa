// The fast paths against the plain ones: every attention formulation against the
// reference's einsum (outputs and gradients) and the fixture, in-place SiLU in inference,
// the fused AdamW against the single-tensor one and LibTorch's, the foreach EMA against the
// reference's per-tensor update, the FLOP counter against a count by hand, and the
// CUDA-graph sampler's loop (static buffers, noise drawn before the step) against the
// eager loops on the CPU.
#include "test_fast_paths.h"
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/model/attention.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/flop_count.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/adamw.h"
#include "idiff/train/ema.h"

#include <torch/optim/adamw.h>

namespace idiff {
namespace {

using test::load_fixture;
using test::load_json;

using test::attention_and_grad;
using test::run_adamw;

TEST(FastAttention, EveryFormulationMatchesTheEinsumWithGradients) {
  // [BH, 3ch, T]: T = 64 in float64 is 32 KiB per head, so the CPU path runs in chunks of
  // 32 heads: 80 heads take three chunks, the last one short.
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    const double tol = dtype == at::kDouble ? 1e-12 : 1e-5;
    for (const auto& shape : std::vector<std::vector<int64_t>>{{80, 48, 64}, {6, 24, 16}}) {
      const at::Tensor qkv = at::randn(shape, at::TensorOptions().dtype(dtype));
      const at::Tensor g = at::randn({shape[0], shape[1] / 3, shape[2]}, qkv.options());
      const auto [ref, ref_grad] = attention_and_grad(qkv, AttentionImpl::Einsum, g);
      for (const auto impl : {AttentionImpl::Bmm, AttentionImpl::Sdpa, AttentionImpl::Auto}) {
        const auto [out, grad] = attention_and_grad(qkv, impl, g);
        EXPECT_EQ(out.sizes(), ref.sizes());
        // ATen's math attention is float64 only to ~1e-7 (measured; a float32 step inside).
        const double t = impl != AttentionImpl::Bmm ? std::max(tol, 1e-6) : tol;  // Auto: SDPA
        EXPECT_CLOSE(out, ref, t) << "impl " << static_cast<int>(impl) << " " << dtype;
        EXPECT_CLOSE(grad, ref_grad, t) << "impl " << static_cast<int>(impl) << " " << dtype;
        // Without a gradient (the chunked path writes into one output, no cat).
        const at::NoGradGuard no_grad;
        EXPECT_CLOSE(qkv_attention(qkv, impl), ref, t) << "impl " << static_cast<int>(impl);
      }
    }
  }
}

TEST(FastAttention, FixtureOutputsMatchTheReferenceWithEveryFormulation) {
  const auto meta = load_json("unet_tiny.json");
  UNetModel model = create_model(test::model_config_from_flags(meta["flags"]));
  load_state_dict(*model, load_fixture("unet_tiny.weights.safetensors"), "unet_tiny");
  model->eval();
  const TensorMap io = load_fixture("unet_tiny.io.safetensors");
  for (const auto impl : {AttentionImpl::Einsum, AttentionImpl::Bmm, AttentionImpl::Sdpa}) {
    model->set_attention_impl(impl);
    torch::NoGradGuard no_grad;
    EXPECT_CLOSE(model->forward(io.at("x"), io.at("t")), io.at("out"), 1e-4)
        << "impl " << static_cast<int>(impl);
  }
}

TEST(FastAttention, ParseNamesAndRejectOthers) {
  EXPECT_EQ(parse_attention_impl("auto", "--attention"), AttentionImpl::Auto);
  EXPECT_EQ(parse_attention_impl("einsum", "--attention"), AttentionImpl::Einsum);
  EXPECT_EQ(parse_attention_impl("bmm", "--attention"), AttentionImpl::Bmm);
  EXPECT_EQ(parse_attention_impl("sdpa", "--attention"), AttentionImpl::Sdpa);
  try {
    parse_attention_impl("flash", "--attention");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--attention"), std::string::npos) << e.what();
  }
}

TEST(InPlaceSilu, InferenceEqualsTheRecordedForward) {
  ModelConfig cfg = test::small_unet_config();
  cfg.learn_sigma = true;
  UNetModel model = create_model(cfg);
  test::randomize_parameters(model->parameters());
  model->eval();
  const at::Tensor x = at::randn({2, 3, 32, 32});
  const at::Tensor t = at::tensor({3.0f, 700.0f});
  const at::Tensor recorded = model->forward(x, t);  // gradients recorded: out-of-place SiLU
  ASSERT_TRUE(recorded.requires_grad());
  at::Tensor inference;
  {
    c10::InferenceMode guard;
    inference = model->forward(x, t);
  }
  EXPECT_TRUE(at::equal(recorded.detach(), inference));
}

TEST(FusedAdamW, EqualsTheSingleTensorUpdateAndLibTorchs) {
  const int steps = 25;
  const auto single = run_adamw(AdamWOptions::Impl::Single, steps);
  const auto fused = run_adamw(AdamWOptions::Impl::Fused, steps);
  const auto automatic = run_adamw(AdamWOptions::Impl::Auto, steps);
  // LibTorch's torch::optim::AdamW (its own per-parameter loop) on the same gradients.
  at::manual_seed(3);
  std::vector<at::Tensor> params = {at::randn({37}), at::randn({8, 4, 3, 3}), at::randn({5, 7})};
  for (auto& p : params) p.requires_grad_(true);
  torch::optim::AdamW torch_opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.05));
  at::Generator gen = at::detail::createCPUGenerator(11);
  for (int s = 0; s < steps; ++s) {
    for (auto& p : params) p.mutable_grad() = at::randn(p.sizes(), gen);
    torch_opt.step();
  }
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_CLOSE(fused[i], single[i], 1e-6) << "parameter " << i;
    EXPECT_CLOSE(automatic[i], fused[i], 0.0) << "parameter " << i;
    EXPECT_CLOSE(single[i], params[i].detach(), 1e-6) << "parameter " << i;
  }
}

TEST(ForeachEma, BitIdenticalToThePerTensorUpdate) {
  std::vector<at::Tensor> targets = {at::randn({33}), at::randn({4, 5, 3})};
  std::vector<at::Tensor> sources = {at::randn({33}), at::randn({4, 5, 3})};
  std::vector<at::Tensor> expected;
  for (size_t i = 0; i < targets.size(); ++i) {
    // The reference's nn.update_ema: targ.detach().mul_(rate).add_(src, alpha=1 - rate).
    expected.push_back(targets[i].clone().mul_(0.9999).add_(sources[i], 1 - 0.9999));
  }
  update_ema(targets, sources, 0.9999);
  for (size_t i = 0; i < targets.size(); ++i) EXPECT_TRUE(at::equal(targets[i], expected[i]));
}

TEST(FlopCount, SmallUNetCountedByHand) {
  // Two levels (32 and 64 channels), one ResBlock per level, attention at rate 2 (1 head).
  UNetOptions o;
  o.model_channels = 32;
  o.num_res_blocks = 1;
  o.channel_mult = {1, 2};
  o.attention_resolutions = {2};
  o.out_channels = 6;
  UNetModel model(o);
  const double H = 16, W = 16, h = 8, w = 8;
  auto conv = [](double cin, double cout, double k, double hh, double ww) {
    return 2 * cin * cout * k * k * hh * ww;
  };
  auto lin = [](double in, double out) { return 2 * in * out; };
  // A ResBlock without scale-shift: in conv, embedding projection, out conv, skip (1x1).
  auto res = [&](double cin, double cout, double hh, double ww) {
    return conv(cin, cout, 3, hh, ww) + lin(128, cout) + conv(cout, cout, 3, hh, ww) +
           (cin != cout ? conv(cin, cout, 1, hh, ww) : 0.0);
  };
  const double t = h * w;
  const double attn_conv = 2 * 64 * 192 * t + 2 * 64 * 64 * t, attn_mm = 4 * t * t * 64;
  double conv_linear = lin(32, 128) + lin(128, 128);     // time embedding
  conv_linear += conv(3, 32, 3, H, W);                   // stem
  conv_linear += res(32, 32, H, W);                      // level 0
  conv_linear += conv(32, 32, 3, h, w);                  // downsample (stride 2)
  conv_linear += res(32, 64, h, w) + attn_conv;          // level 1
  conv_linear += 2 * res(64, 64, h, w) + attn_conv;      // middle
  conv_linear += res(128, 64, h, w) + attn_conv;         // up, level 1 (skip 64)
  conv_linear += res(96, 64, h, w) + attn_conv;          // up, level 1 (skip 32)
  conv_linear += conv(64, 64, 3, H, W);                  // upsample conv at 16x16
  conv_linear += res(96, 32, H, W) + res(64, 32, H, W);  // up, level 0 (skips 32, 32)
  conv_linear += conv(32, 6, 3, H, W);                   // output head
  const FlopCount f = count_forward_flops(*model, 16, 16);
  EXPECT_DOUBLE_EQ(f.attention, 4 * attn_mm);
  EXPECT_DOUBLE_EQ(f.conv + f.linear, conv_linear);
  EXPECT_DOUBLE_EQ(training_step_flops(*model, 16, 16, 8), 3 * 8 * f.total());
  // guided-diffusion's resblock_updown: ResBlocks at the resampled size replace the
  // resampling convolutions.
  o.resblock_updown = true;
  UNetModel adm(o);
  conv_linear += res(32, 32, h, w) - conv(32, 32, 3, h, w);
  conv_linear += res(64, 64, H, W) - conv(64, 64, 3, H, W);
  const FlopCount g = count_forward_flops(*adm, 16, 16);
  EXPECT_DOUBLE_EQ(g.conv + g.linear, conv_linear);
}

TEST(FlopCount, PublishedCifar10Model) {
  // The reference's count on an H200 (docs/performance.md): 6.44 TFLOP per training step of batch
  // 128 on the CIFAR-10 model.
  const auto configs = load_json("published_configs.json");
  const ModelConfig cfg = test::model_config_from_flags(configs["cifar10_uncond"]["flags"]);
  UNetModel model = create_model(cfg);
  EXPECT_NEAR(training_step_flops(*model, 32, 32, 128) / 1e12, 6.44, 0.05);
}

// The tiny fixture model with its diffusion respaced to `respacing`.
struct TinySampler {
  UNetModel model{nullptr};
  SpacedDiffusion diffusion;
  ModelFn fn;
};

TinySampler tiny_sampler(const std::string& respacing) {
  const auto meta = load_json("unet_tiny.json");
  UNetModel model = create_model(test::model_config_from_flags(meta["flags"]));
  load_state_dict(*model, load_fixture("unet_tiny.weights.safetensors"), "unet_tiny");
  model->eval();
  DiffusionConfig dc = test::diffusion_config_from_flags(meta["flags"]);
  dc.timestep_respacing = respacing;
  ModelFn fn = [impl = model.ptr()](const at::Tensor& x, const at::Tensor& t) {
    return impl->forward(x, t);
  };
  return {model, create_gaussian_diffusion(dc), fn};
}

TEST(GraphSampler, StaticBufferLoopEqualsTheEagerLoops) {
  TinySampler s = tiny_sampler("6");
  const std::vector<int64_t> shape = {2, 3, 32, 32};
  for (const bool ddim : {false, true}) {
    SampleOptions opts;
    opts.generator = at::detail::createCPUGenerator(5);
    const at::Tensor eager = ddim ? ddim_sample_loop(s.diffusion, s.fn, shape, opts, 0.5)
                                  : p_sample_loop(s.diffusion, s.fn, shape, opts);
    for (const int64_t eager_steps : {0, 2}) {
      LoopOptions loop;
      loop.static_buffers = true;
      loop.eager_steps = eager_steps;
      opts.generator = at::detail::createCPUGenerator(5);
      std::vector<double> seen;
      const auto on_step = [&](const SampleStep& step) { seen.push_back(step.t); };
      const at::Tensor graphed =
          ddim ? ddim_sample_loop(s.diffusion, s.fn, shape, opts, 0.5, on_step, loop)
               : p_sample_loop(s.diffusion, s.fn, shape, opts, on_step, loop);
      EXPECT_TRUE(at::equal(graphed, eager)) << "ddim " << ddim;
      const std::vector<int64_t>& map = s.diffusion.timestep_map();
      EXPECT_EQ(seen, std::vector<double>(map.rbegin(), map.rend()));
    }
  }
}

// The engine's solvers on the tiny UNet: static buffers (one per step variant) equal eager.
TEST(GraphSampler, EngineSolversOnAUNetEqualTheEagerLoop) {
  TinySampler s = tiny_sampler("");
  const DiffusionParams params =
      diffusion_params(test::diffusion_config_from_flags(load_json("unet_tiny.json")["flags"]));
  const StepSchedule sched = make_step_schedule(noise_schedule_of(params), "karras", 4);
  for (const std::string name : {"dpmpp_3m", "unipc", "heun", "euler_a"}) {
    SolverOptions o;
    o.name = name;
    const auto run = [&](bool buffers) {
      auto solver = make_solver(o, params, sched, s.fn, {});
      SampleOptions opts;
      opts.generator = at::detail::createCPUGenerator(9);
      LoopOptions loop;
      loop.static_buffers = buffers;
      return run_sampler(*solver, initial_noise({2, 3, 32, 32}, opts), opts, loop);
    };
    EXPECT_TRUE(at::equal(run(false), run(true))) << name;
  }
}

TEST(GraphSampler, CpuWithoutStaticBuffersIsTheEagerLoop) {
  TinySampler s = tiny_sampler("4");
  const std::vector<int64_t> shape = {1, 3, 32, 32};
  SampleOptions opts;  // the global generator
  LoopOptions loop;    // cuda_graph = true: nothing to capture on the CPU
  at::manual_seed(7);
  const at::Tensor a = p_sample_loop(s.diffusion, s.fn, shape, opts, {}, loop);
  at::manual_seed(7);
  EXPECT_TRUE(at::equal(a, p_sample_loop(s.diffusion, s.fn, shape, opts)));
  EXPECT_THROW(ddim_sample_loop(s.diffusion, s.fn, shape, opts, -1, {}, loop), ConfigError);
  opts.noise = at::randn({2, 3, 32, 32});
  EXPECT_THROW(p_sample_loop(s.diffusion, s.fn, shape, opts, {}, loop), Error);
}

}  // namespace
}  // namespace idiff
