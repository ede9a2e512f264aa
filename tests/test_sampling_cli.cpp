// The sampling engine from the command line: `idiff sample --sampler/--steps/--schedule`,
// the float samples file, SDEdit's --init_image, `idiff tune-steps` then
// `idiff sample --steps_file`, and the flags' errors.
#include "test_train_util.h"

#include "idiff/common/strings.h"
#include "idiff/data/image_grid.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>

#include <fstream>

namespace idiff {
namespace {

using test::TempDir;

std::vector<std::string> tiny_args(const TempDir& dir, std::vector<std::string> extra) {
  std::vector<std::string> args = {"sample",
                                   "--model_path",
                                   test::data_path("unet_tiny.weights.safetensors"),
                                   "--num_samples",
                                   "3",
                                   "--batch_size",
                                   "2",
                                   "--log_dir",
                                   dir.path(),
                                   "--device",
                                   "cpu",
                                   "--grid_size",
                                   "0"};
  return test::cat_args(args, test::fixture_flags("unet_tiny"), extra);
}

at::Tensor samples_of(const TempDir& dir) {
  return read_npz(dir.file("samples_3x32x32x3.npz")).at("arr_0");
}

TEST(SamplingCli, AnEngineSolverWritesItsFloatSamples) {
  TempDir dir;
  const auto r = test::run_idiff(
      tiny_args(dir, {"--sampler", "dpmpp_2m", "--steps", "5", "--save_float", "True"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dpmpp_2m, 5 steps (5 model calls), trailing from t=999 to sigma 0"),
            std::string::npos)
      << r.out;
  const at::Tensor f = load_tensor_file(dir.file("samples_float.safetensors")).at("samples");
  EXPECT_EQ(f.sizes(), (at::IntArrayRef{3, 3, 32, 32}));
  EXPECT_EQ(f.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(samples_to_uint8(f), samples_of(dir)));
  // The reference's sampler stays the default.
  TempDir ref;
  const auto d =
      test::run_idiff(tiny_args(ref, {"--use_ddim", "True", "--timestep_respacing", "ddim10"}));
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("ddim (the reference's loop), 10 steps (10 model calls), respacing ddim10"),
            std::string::npos)
      << d.out;
}

TEST(SamplingCli, InitImageStartsFromTheNoisedImage) {
  TempDir dir, edit, plain;
  // A smooth 32x32 picture.
  const at::Tensor img = (at::linspace(0, 255, 32).view({1, 32, 1}).expand({32, 32, 3}) * 0.9 + 10)
                             .to(at::kByte)
                             .contiguous();
  write_png(dir.file("init.png"), img);
  const std::vector<std::string> engine = {"--sampler", "ddim", "--steps", "2", "--t_start", "2"};
  auto r = test::run_idiff(tiny_args(
      edit,
      test::cat_args(engine, std::vector<std::string>{"--init_image", dir.file("init.png")})));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_idiff(tiny_args(plain, engine));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto diff = [&](const at::Tensor& s) {
    return (s.to(at::kFloat) - img.to(at::kFloat)).abs().mean().item<float>();
  };
  EXPECT_LT(diff(samples_of(edit)), 10.0f);  // little noise added, little removed
  EXPECT_GT(diff(samples_of(plain)), 30.0f);
}

TEST(SamplingCli, TunedStepsAreWrittenAndSampled) {
  TempDir dir;
  const std::string steps = dir.file("steps.json");
  auto r = test::run_idiff(test::cat_args(
      std::vector<std::string>{
          "tune-steps", "--model_path", test::data_path("unet_tiny.weights.safetensors"),
          "--sampler", "dpmpp_2m", "--steps", "3", "--num_samples", "2", "--reference_steps", "12",
          "--iterations", "1", "--steps_file", steps, "--log_dir", dir.path(), "--device", "cpu"},
      test::fixture_flags("unet_tiny")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("steps written to " + steps), std::string::npos) << r.out;
  const auto json = nlohmann::json::parse(std::ifstream(steps));
  EXPECT_EQ(json["levels"].size(), 4u);
  EXPECT_LE(json["error"].get<double>(), json["initial_error"].get<double>());
  EXPECT_EQ(json["sampler"], "dpmpp_2m");
  // Tuned in `idiff sample`'s setting (clipping on), and never worse than the best fixed
  // schedule on the held-out draws: the fixed one is written when tuning does not help.
  EXPECT_EQ(json["clip_denoised"], true);
  EXPECT_LE(json["held_out_error"].get<double>(), json["held_out_error_fixed"].get<double>());
  EXPECT_NE(r.out.find("held-out draws: tuned "), std::string::npos) << r.out;
  TempDir out;
  // The file names its sampler: no --sampler needed.
  r = test::run_idiff(tiny_args(out, {"--steps_file", steps}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dpmpp_2m, 3 steps (3 model calls)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--sampler dpmpp_2m: the sampler " + steps + " was tuned for"),
            std::string::npos)
      << r.out;
  // tune-steps has no starting image or sample files to write.
  r = test::run_idiff({"tune-steps", "--init_image", "x.png"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown flag --init_image"), std::string::npos) << r.err;
}

// `idiff sample --help` lists the sampler registry's rows, and each setting's help says
// which samplers read it.
TEST(SamplingCli, HelpListsEverySampler) {
  const auto r = test::run_idiff({"sample", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const SamplerRow& row : sampler_registry()) {
    EXPECT_NE(r.out.find(str("  ", row.name, " ")), std::string::npos) << row.name;
    EXPECT_NE(r.out.find(row.help), std::string::npos) << row.name;
  }
  EXPECT_NE(r.out.find("(read by unipc)"), std::string::npos) << r.out;
}

TEST(SamplingCli, BadSamplerFlagsAreOneLineErrors) {
  TempDir dir;
  const auto expect_error = [&](std::vector<std::string> flags, const std::string& want) {
    const auto r = test::run_idiff(tiny_args(dir, flags));
    EXPECT_NE(r.exit_code, 0) << want;
    EXPECT_LT(r.exit_code, 128) << want;  // not a crash
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  };
  expect_error({"--sampler", "dpm_fast", "--steps", "4"}, "--sampler: unknown sampler 'dpm_fast'");
  expect_error({"--steps", "4", "--timestep_respacing", "10"}, "give one");
  expect_error({"--schedule", "karras"}, "need --steps");
  expect_error({"--sampler", "ddpm", "--steps", "10"}, "integer timesteps");
  expect_error({"--sampler", "unipc", "--steps", "4", "--order", "5"}, "--order");
  expect_error({"--sampler", "unipc", "--steps", "4", "--unipc_variant", "bh3"}, "--unipc_variant");
  expect_error({"--sampler", "unipc", "--steps", "4", "--eta", "0.5"},
               "--sampler unipc does not read --eta 0.5 (it reads: order, unipc_variant");
  expect_error({"--use_ddim", "True", "--sampler", "unipc", "--steps", "4"}, "give one");
  expect_error({"--steps", "4", "--final_sigma", "one"}, "--final_sigma");
  expect_error({"--steps", "4", "--t_start", "5000"}, "--t_start");
  expect_error({"--steps", "4000"}, "--steps");
  expect_error({"--sampler", "ddim", "--steps", "1"}, "needs at least 2 steps (--steps");
  expect_error({"--steps_file", dir.file("missing.json")}, "missing.json");
  expect_error({"--sampler", "ddim", "--steps", "2", "--t_start", "500", "--init_image",
                dir.file("missing.png")},
               "missing.png");
  expect_error({"--sampler", "ddim", "--steps", "2", "--init_image", dir.file("missing.png")},
               "--init_image needs --t_start");
}

// Flags that trip a newcomer: a misspelt flag names the closest one; the checkpoint may
// come first, as `idiff info` takes it.
TEST(SamplingCli, MisspeltFlagsAndAPositionalCheckpoint) {
  TempDir dir;
  auto r = test::run_idiff(tiny_args(dir, {"--num_channel", "32"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown flag --num_channel (did you mean --num_channels?)"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  std::vector<std::string> args = tiny_args(dir, {"--sampler", "ddim", "--steps", "2"});
  const auto at = std::find(args.begin(), args.end(), "--model_path");
  ASSERT_NE(at, args.end());
  args.erase(at);  // the path after it stays, as a positional argument
  r = test::run_idiff(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loading " + test::data_path("unet_tiny.weights.safetensors")),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace idiff
