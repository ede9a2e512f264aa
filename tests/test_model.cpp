// The UNet against the reference: state-dict layout of the published models, outputs of
// the fixture models, gradient checkpointing, and the errors users can cause.
#include "test_fast_paths.h"
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/common/autocast.h"
#include "idiff/common/error.h"
#include "idiff/model/factory.h"
#include "idiff/model/nn.h"
#include "idiff/model/state_dict.h"

#include <cmath>
#include <filesystem>

namespace idiff {
namespace {

using test::load_fixture;
using test::load_json;

UNetModel model_from_fixture(const std::string& name) {
  const auto meta = load_json(name + ".json");
  const ModelConfig cfg = test::model_config_from_flags(meta["flags"]);
  UNetModel model = meta["flags"].contains("large_size") ? sr_create_model(cfg) : create_model(cfg);
  load_state_dict(*model, load_fixture(name + ".weights.safetensors"), name);
  model->eval();
  return model;
}

void expect_layout(const UNetModel& model, const nlohmann::json& expected,
                   const std::string& what) {
  const TensorMap sd = state_dict(*model);
  ASSERT_EQ(sd.size(), expected["keys"].size()) << what;
  size_t i = 0;
  for (const auto& [name, t] : sd) {
    const auto& key = expected["keys"][i++];
    ASSERT_EQ(name, key[0].get<std::string>()) << what << ": key " << i - 1;
    EXPECT_EQ(t.sizes().vec(), key[1].get<std::vector<int64_t>>()) << what << ": " << name;
  }
  EXPECT_EQ(parameter_count(*model), expected["params"].get<int64_t>()) << what;
}

TEST(UNetLayout, PublishedModelsMatchReferenceKeysShapesAndCounts) {
  const auto configs = load_json("published_configs.json");
  for (auto it = configs.begin(); it != configs.end(); ++it) {
    const auto& flags = it.value()["flags"];
    const ModelConfig cfg = test::model_config_from_flags(flags);
    UNetModel model = flags.contains("large_size") ? sr_create_model(cfg) : create_model(cfg);
    expect_layout(model, it.value(), it.key());
    // What idiff info says of models too large to build, exact on every published layout.
    EXPECT_EQ(estimated_parameter_count(cfg, flags.contains("large_size")), parameter_count(*model))
        << it.key();
  }
}

TEST(UNetLayout, FixtureModelsMatchReferenceKeys) {
  for (const std::string name : {"unet_tiny", "unet_tiny_cc", "sr_tiny"}) {
    const auto meta = load_json(name + ".json");
    const ModelConfig cfg = test::model_config_from_flags(meta["flags"]);
    expect_layout(meta["flags"].contains("large_size") ? sr_create_model(cfg) : create_model(cfg),
                  meta, name);
  }
}

TEST(UNetParity, FixtureOutputsMatchReference) {
  for (const std::string name : {"unet_tiny", "unet_tiny_cc", "sr_tiny"}) {
    UNetModel model = model_from_fixture(name);
    const TensorMap io = load_fixture(name + ".io.safetensors");
    ModelKwargs kw;
    if (io.contains("y")) kw.y = io.at("y");
    if (io.contains("low_res")) kw.low_res = io.at("low_res");
    torch::NoGradGuard no_grad;
    const at::Tensor out = model->forward_kwargs(io.at("x"), io.at("t"), kw);
    EXPECT_CLOSE(out, io.at("out"), 1e-4);
  }
}

TEST(UNetParity, ZeroInitialisedOutputLayers) {
  ModelConfig cfg = test::small_unet_config();
  UNetModel model = create_model(cfg);
  // A fresh model's output conv is zero, so the model outputs exactly zero.
  torch::NoGradGuard no_grad;
  const at::Tensor out = model->forward(at::randn({2, 3, 32, 32}), at::tensor({1.0f, 500.0f}));
  EXPECT_EQ(out.abs().max().item<float>(), 0.0f);
  const TensorMap sd = state_dict(*model);
  EXPECT_EQ(sd.at("out.2.weight").abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(sd.at("input_blocks.1.0.out_layers.3.weight").abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(sd.at("middle_block.1.proj_out.weight").abs().sum().item<float>(), 0.0f);
  EXPECT_GT(sd.at("input_blocks.1.0.in_layers.2.weight").abs().sum().item<float>(), 0.0f);
}

// timestep_embedding against a plain-loop re-implementation of its definition.
TEST(TimestepEmbedding, MatchesDefinitionEvenAndOddDims) {
  const at::Tensor t = at::tensor({0.0f, 1.0f, 17.5f, 999.0f});
  for (int64_t dim : {32, 33, 128}) {
    const at::Tensor emb = timestep_embedding(t, dim);
    ASSERT_EQ(emb.sizes(), (at::IntArrayRef{4, dim}));
    const int64_t half = dim / 2;
    at::Tensor ref = at::zeros({4, dim}, at::kDouble);
    for (int64_t n = 0; n < 4; ++n) {
      for (int64_t i = 0; i < half; ++i) {
        const double freq = std::exp(-std::log(10000.0) * i / half);
        const double arg = t[n].item<double>() * freq;
        ref[n][i] = std::cos(arg);
        ref[n][half + i] = std::sin(arg);
      }
    }
    EXPECT_CLOSE(emb, ref, 1e-5);
    if (dim % 2) {
      EXPECT_EQ(emb.select(1, dim - 1).abs().max().item<float>(), 0.0f);
    }
  }
}

TEST(GroupNorm32, ComputesInFloat32ForHalfInput) {
  GroupNorm32 norm = normalization(64);
  const at::Tensor x = at::randn({2, 64, 4, 4}) * 100 + 50;
  const at::Tensor ref = norm->forward(x);
  const at::Tensor half_out = norm->forward(x.to(at::kHalf));
  EXPECT_EQ(half_out.scalar_type(), at::kHalf);
  EXPECT_CLOSE(half_out.to(at::kFloat), ref, 2e-3);
}

// Checkpointed and plain blocks must give the same outputs and gradients.
TEST(GradientCheckpoint, SameOutputsAndGradients) {
  ModelConfig cfg = test::small_unet_config();
  cfg.learn_sigma = true;
  cfg.attention_resolutions = "16";
  UNetModel plain = create_model(cfg);
  cfg.use_checkpoint = true;
  UNetModel ckpt = create_model(cfg);
  // float64, so that only a real difference (not summation order) can exceed 1e-6.
  plain->to(at::kDouble);
  ckpt->to(at::kDouble);
  // Random (non-zero) weights everywhere, identical in both models.
  test::randomize_parameters(plain->parameters());
  load_state_dict(*ckpt, state_dict(*plain), "plain model");
  const at::Tensor x = at::randn({2, 3, 32, 32}, at::kDouble);
  const at::Tensor t = at::tensor({3.0f, 700.0f});
  const at::Tensor out_plain = plain->forward(x, t);
  const at::Tensor out_ckpt = ckpt->forward(x, t);
  EXPECT_CLOSE(out_ckpt, out_plain, 1e-6);
  (out_plain * out_plain).sum().backward();
  (out_ckpt * out_ckpt).sum().backward();
  const TensorMap a = state_dict(*plain), b = state_dict(*ckpt);
  std::vector<at::Tensor> ga, gb;
  for (const auto& [name, p] : a) {
    ASSERT_TRUE(p.grad().defined()) << name;
    ASSERT_TRUE(b.at(name).grad().defined()) << name;
    ga.push_back(p.grad().flatten());
    gb.push_back(b.at(name).grad().flatten());
    // Per tensor, relative to its own size; biases right before a GroupNorm have
    // gradients of ~1e-17 (the norm cancels them), hence the absolute floor.
    const double diff = (gb.back() - ga.back()).norm().item<double>();
    EXPECT_LE(diff, 1e-6 * ga.back().norm().item<double>() + 1e-12) << name;
  }
  EXPECT_CLOSE(at::cat(gb), at::cat(ga), 1e-6);
}

// Under autocast (bf16 training) the backward's recomputation runs after the autocast
// scope has closed: it must recompute under the forward's autocast state, and give the
// plain model's gradients. The CPU's bf16 autocast stands in for CUDA's.
TEST(GradientCheckpoint, RecomputesUnderTheForwardsAutocast) {
  // The same bf16 computation twice, its rounding met in a different order (bf16 keeps
  // about 3 significant digits): measured 5e-5 overall.
  EXPECT_LT(test::checkpoint_grad_error_under_autocast(c10::Device(c10::kCPU)), 1e-3);
}

// Under bf16 autocast the torso runs in bf16 but the output head (norm, SiLU, conv) in
// float32, as the reference's fp16 path keeps it. The CPU's autocast stands in for CUDA's.
TEST(UNetAutocast, OutputHeadStaysFloat32) {
  ModelConfig cfg = test::small_unet_config();
  cfg.learn_sigma = true;
  cfg.attention_resolutions = "16";
  UNetModel model = create_model(cfg);
  test::randomize_parameters(model->parameters());
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 3, 32, 32});
  const at::Tensor t = at::tensor({3.0f, 700.0f});
  const at::Tensor full = model->forward(x, t);
  at::Tensor mixed;
  {
    const AutocastGuard autocast(c10::DeviceType::CPU, true, at::kBFloat16);
    mixed = model->forward(x, t);
    // The guard is back in force after the head.
    EXPECT_TRUE(autocast_state(c10::DeviceType::CPU).enabled);
  }
  EXPECT_EQ(mixed.scalar_type(), at::kFloat);
  EXPECT_CLOSE(mixed, full, 5e-2);  // the torso's bf16 rounding
}

TEST(GradientCheckpoint, InputGradientsFlow) {
  ModelConfig cfg = test::small_unet_config();
  cfg.use_checkpoint = true;
  UNetModel model = create_model(cfg);
  test::randomize_parameters(model->parameters());
  const at::Tensor x = at::randn({1, 3, 32, 32}).requires_grad_(true);
  model->forward(x, at::tensor({10.0f})).sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<float>(), 0.0f);
}

// ---- errors users can cause ------------------------------------------------------------

using test::error_of;

TEST(UNetErrors, UnsupportedImageSize) {
  ModelConfig cfg;
  cfg.image_size = 48;
  const std::string msg = error_of([&] { create_model(cfg); });
  EXPECT_NE(msg.find("`image_size` 48"), std::string::npos) << msg;
  EXPECT_NE(msg.find("32, 64, 128, 256 and 512"), std::string::npos) << msg;
  EXPECT_NE(msg.find("give `channel_mult`"), std::string::npos) << msg;
}

TEST(UNetErrors, ChannelsNotDivisibleByHeads) {
  ModelConfig cfg;
  cfg.image_size = 32;
  cfg.num_channels = 32;
  cfg.num_heads = 3;
  const std::string msg = error_of([&] { create_model(cfg); });
  EXPECT_NE(msg.find("3 heads"), std::string::npos) << msg;
}

TEST(UNetErrors, ChannelsNotDivisibleByGroups) {
  ModelConfig cfg;
  cfg.image_size = 32;
  cfg.num_channels = 48;
  const std::string msg = error_of([&] { create_model(cfg); });
  EXPECT_NE(msg.find("divisible by its 32 groups"), std::string::npos) << msg;
}

TEST(UNetErrors, BadAttentionResolutions) {
  ModelConfig cfg;
  cfg.image_size = 32;
  cfg.attention_resolutions = "16,x";
  const std::string msg = error_of([&] { create_model(cfg); });
  EXPECT_NE(msg.find("`attention_resolutions`"), std::string::npos) << msg;
}

TEST(UNetErrors, LabelsRequiredExactlyForClassConditional) {
  ModelConfig cfg = test::small_unet_config();
  cfg.class_cond = true;
  UNetModel model = create_model(cfg);
  const at::Tensor x = at::randn({2, 3, 32, 32}), t = at::tensor({1.0f, 2.0f});
  EXPECT_NE(error_of([&] { model->forward(x, t); }).find("labels y are required"),
            std::string::npos);
  EXPECT_NO_THROW(model->forward(x, t, at::tensor({int64_t{1}, int64_t{999}})));
  cfg.class_cond = false;
  UNetModel uncond = create_model(cfg);
  EXPECT_NE(error_of([&] {
              uncond->forward(x, t, at::tensor({int64_t{1}, int64_t{2}}));
            }).find("not class-conditional"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              uncond->forward(at::randn({2, 1, 32, 32}), t);
            }).find("[N, 3, H, W]"),
            std::string::npos);
}

TEST(UNetErrors, StateDictMismatchListsEveryProblem) {
  ModelConfig cfg = test::small_unet_config();
  UNetModel model = create_model(cfg);
  TensorMap sd;
  for (const auto& [name, t] : state_dict(*model)) {
    if (name == "time_embed.0.bias") continue;  // missing
    if (name == "out.2.weight") {
      sd.insert(name, at::zeros({3, 32, 5, 5}));  // mis-shaped
      continue;
    }
    sd.insert(name, t.clone());
  }
  sd.insert("label_emb.weight", at::zeros({1000, 128}));  // unexpected
  const std::string msg = error_of([&] { load_state_dict(*model, sd, "ckpt.pt"); });
  EXPECT_NE(msg.find("ckpt.pt"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing keys (1): time_embed.0.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unexpected keys (1): label_emb.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("out.2.weight (file [3, 32, 5, 5], model [3, 32, 3, 3])"), std::string::npos)
      << msg;
}

TEST(UNetErrors, SuperResNeedsLowRes) {
  ModelConfig cfg;
  cfg.large_size = 64;
  cfg.num_channels = 32;
  cfg.num_res_blocks = 1;
  UNetModel model = sr_create_model(cfg);
  const std::string msg = error_of([&] {
    model->forward_kwargs(at::randn({1, 3, 64, 64}), at::tensor({1.0f}), {});
  });
  EXPECT_NE(msg.find("low_res"), std::string::npos) << msg;
  cfg.large_size = 32;
  EXPECT_NE(error_of([&] { sr_create_model(cfg); }).find("`large_size` 32"), std::string::npos);
}

// ---- the command line ------------------------------------------------------------------

TEST(CliInfo, PrintsParameterCountAndLayout) {
  const auto r = test::run_idiff({"info", "--image_size", "32", "--num_channels", "128",
                                  "--num_res_blocks", "3", "--learn_sigma", "True"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("parameters: 52,546,438"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("input_blocks.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Attention 256 (4 heads)"), std::string::npos) << r.out;
}

// Flags describing a model of 22 GB: counted from six small models, never built (the test
// runs under a 4.5 GB address-space limit, which the model's first weight alone exceeds).
TEST(CliInfo, HugeModelsAreCountedNotBuilt) {
  const std::string limited = std::string("ulimit -v 4500000; ") + IDIFF_EXE;
  auto r = test::run_shell(limited + " info --num_channels 1024 --image_size 64");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("parameters: 5,883,403,267 (22,443 MiB in float32; counted without "
                       "building the model"),
            std::string::npos)
      << r.out;
  // train: the allocator's failure said as a setting, with the size (exit 2).
  test::TempDir dir;
  std::filesystem::create_directories(dir.file("data"));
  test::write_shape_folder(dir.file("data"), 2);
  r = test::run_shell(limited + " train --data_dir " + dir.file("data") +
                      " --image_size 32 --num_channels 16384 --max_steps 1 --log_dir " +
                      dir.file("log"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("the model these flags describe (--num_channels 16384, --num_res_blocks "
                       "2, 4 levels) does not fit in memory: 648,012,742,659 parameters"),
            std::string::npos)
      << r.err;
}

TEST(CliInfo, BadFlagsGiveOneLineErrors) {
  auto r = test::run_idiff({"info", "--image_size", "48"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--image_size 48"), std::string::npos) << r.err;
  r = test::run_idiff({"info", "--learn_sigma", "maybe"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--learn_sigma: 'maybe' is not a boolean"), std::string::npos) << r.err;
  r = test::run_idiff({"info", "--no_such_flag", "1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--no_such_flag"), std::string::npos) << r.err;
  r = test::run_idiff({"info", "--num_channels", "abc"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(
      r.err.find(
          "idiff: error: --num_channels: 'abc' is not an integer (expected an integer from 1 to "
          "16384) (idiff info --help"),
      std::string::npos)
      << r.err;
  r = test::run_idiff({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("idiff: error: unknown command 'frobnicate' (commands: "), std::string::npos)
      << r.err;
  r = test::run_idiff({"info", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--num_channels"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace idiff
