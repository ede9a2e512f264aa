// `idiff sample`, `idiff nll` and the super-resolution commands end to end: the CLI
// reproduces the reference's DDIM trajectory, seeds repeat, the files have the
// reference's layout, bits/dim falls with training and equals the library's
// calc_bpd_loop, super-resolution trains and upsamples, and bad inputs are clear errors.
#include "test_train_util.h"

#include "idiff/common/strings.h"
#include "idiff/data/image_grid.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>

namespace idiff {
namespace {

using test::TempDir;

using test::fixture_flags;

std::string samples_file(const TempDir& dir, int n, int size) {
  return dir.file(str("samples_", n, "x", size, "x", size, "x3.npz"));
}

TEST(SampleCli, DdimReproducesTheReferenceTrajectory) {
  for (const std::string name : {"unet_tiny", "unet_tiny_cc"}) {
    TempDir dir;
    const TensorMap ref = test::load_fixture(name + ".ddim.safetensors");
    TensorMap noise;
    noise.insert("x_T", ref.at("noise"));
    write_npz(dir.file("noise.npz"), noise);
    std::vector<std::string> args = {"sample",
                                     "--model_path",
                                     test::data_path(name + ".weights.safetensors"),
                                     "--use_ddim",
                                     "True",
                                     "--initial_noise",
                                     dir.file("noise.npz"),
                                     "--num_samples",
                                     "2",
                                     "--batch_size",
                                     "2",
                                     "--log_dir",
                                     dir.path(),
                                     "--device",
                                     "cpu"};
    args = test::cat_args(args, fixture_flags(name),
                          std::vector<std::string>{"--timestep_respacing", "ddim10"});
    if (name == "unet_tiny_cc")
      args = test::cat_args(args, std::vector<std::string>{"--class", "3,999"});
    const auto r = test::run_idiff(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const at::Tensor got = read_npz(samples_file(dir, 2, 32)).at("arr_0").to(at::kInt);
    const at::Tensor want = samples_to_uint8(ref.at("sample")).to(at::kInt);
    // The float samples agree to ~1e-6 (diffusion tests); as bytes, a value may land on the
    // other side of a rounding boundary.
    EXPECT_LE((got - want).abs().max().item<int>(), 1) << name;
    EXPECT_GE((got == want).to(at::kFloat).mean().item<float>(), 0.999f) << name;
  }
}

std::vector<std::string> tiny_sample_args(const TempDir& dir, const std::string& seed) {
  return test::cat_args(
      std::vector<std::string>{"sample", "--model_path",
                               test::data_path("unet_tiny.weights.safetensors"), "--num_samples",
                               "3", "--batch_size", "2", "--log_dir", dir.path(), "--device", "cpu",
                               "--seed", seed},
      fixture_flags("unet_tiny"), std::vector<std::string>{"--timestep_respacing", "10"});
}

TEST(SampleCli, AncestralSamplingRepeatsWithASeed) {
  TempDir a, b, c;
  ASSERT_EQ(test::run_idiff(tiny_sample_args(a, "5")).exit_code, 0);
  // The same run with the CUDA-graph flag off (on the CPU both are the eager loop).
  std::vector<std::string> args = tiny_sample_args(b, "5");
  args.insert(args.end(), {"--cuda_graph", "False"});
  ASSERT_EQ(test::run_idiff(args).exit_code, 0);
  ASSERT_EQ(test::run_idiff(tiny_sample_args(c, "6")).exit_code, 0);
  const at::Tensor xa = read_npz(samples_file(a, 3, 32)).at("arr_0");
  const at::Tensor xb = read_npz(samples_file(b, 3, 32)).at("arr_0");
  const at::Tensor xc = read_npz(samples_file(c, 3, 32)).at("arr_0");
  EXPECT_TRUE(at::equal(xa, xb));
  EXPECT_FALSE(at::equal(xa, xc));
  EXPECT_TRUE(std::ifstream(a.file("samples_grid.png")).good());
}

// Ctrl-C during sampling: the round under way finishes, the finished samples are written
// (samples.json says partial), and idiff exits 130 saying where they are.
TEST(SampleCli, SigintWritesTheFinishedSamples) {
  TempDir dir;
  std::string cmd =
      std::string(IDIFF_EXE) + " sample --model_path " + test::data_path("unet_tiny.weights.pt");
  for (const std::string& f : fixture_flags("unet_tiny")) cmd += " '" + f + "'";
  // After the fixture's flags, so that these win.
  cmd +=
      " --num_samples 400 --batch_size 1 --timestep_respacing 10 --grid_size 0 --device cpu "
      "--seed 1 --log_dir " +
      dir.path();
  const std::string out = dir.file("out.txt"), pid = dir.file("pid"), rc = dir.file("rc");
  // idiff in the background (its pid kept), then SIGINT once two samples are done.
  const auto r = test::run_shell(
      "(" + cmd + " > " + out + " 2>" + dir.file("err.txt") + " & echo $! > " + pid +
      "; wait $!; echo $? > " + rc + ") > /dev/null 2>&1 & for i in $(seq 600); do grep -q " +
      "'created 2 samples' " + out + " 2>/dev/null && break; sleep 0.1; done; kill -INT $(cat " +
      pid + "); for i in $(seq 600); do [ -s " + rc + " ] && break; sleep 0.1; done; cat " + rc);
  EXPECT_EQ(r.out, "130\n") << r.err;
  std::ifstream err(dir.file("err.txt"));
  const std::string message((std::istreambuf_iterator<char>(err)),
                            std::istreambuf_iterator<char>());
  EXPECT_NE(message.find("idiff: stopped by SIGINT after"), std::string::npos) << message;
  std::ifstream record(dir.file("samples.json"));
  const std::string text((std::istreambuf_iterator<char>(record)),
                         std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"partial\": true"), std::string::npos) << text;
  // Some, not all, of the samples: whole rounds, in an npz named by their count.
  const auto got = test::run_shell("ls " + dir.path() + " | grep '^samples_.*npz$'");
  ASSERT_NE(got.out.find("samples_"), std::string::npos) << got.out;
  const int64_t n = std::stoll(got.out.substr(8));
  EXPECT_GE(n, 2);
  EXPECT_LT(n, 400);
}

// -o / --output name the output folder, as --log_dir does.
TEST(SampleCli, OutputFlagNamesTheFolder) {
  TempDir dir;
  for (const std::string flag : {"-o", "--output"}) {
    const std::string out = dir.file(flag.substr(flag.find_first_not_of('-')));
    const auto r = test::run_idiff(test::cat_args(
        std::vector<std::string>{"sample", "--model_path", test::data_path("unet_tiny.weights.pt")},
        fixture_flags("unet_tiny"),
        std::vector<std::string>{"--timestep_respacing", "2", "--num_samples", "1", "--seed", "1",
                                 "--device", "cpu", flag, out}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(std::ifstream(out + "/samples_1x32x32x3.npz").good()) << flag;
  }
}

TEST(SampleCli, SamplesFileHasTheReferenceLayoutForNumpy) {
  TempDir dir, dir_cc;
  auto r = test::run_idiff(tiny_sample_args(dir, "1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto check = [](const std::string& file, int n, bool labels) {
    return test::run_shell("cd " + std::string(IDIFF_TEST_SCRIPTS_DIR) + " && " + test::python() +
                           " check_samples_npz.py " + file + " " + std::to_string(n) + " 32 " +
                           (labels ? "1" : "0"));
  };
  auto c = check(samples_file(dir, 3, 32), 3, false);
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"sample", "--model_path",
                               test::data_path("unet_tiny_cc.weights.safetensors"), "--num_samples",
                               "2", "--batch_size", "2", "--log_dir", dir_cc.path(), "--device",
                               "cpu", "--save_pngs", "True", "--seed", "7"},
      fixture_flags("unet_tiny_cc"), std::vector<std::string>{"--timestep_respacing", "5"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  c = check(samples_file(dir_cc, 2, 32), 2, true);
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_TRUE(std::ifstream(dir_cc.file("samples/seed7_000001.png")).good());
  EXPECT_FALSE(std::ifstream(dir_cc.file("progress.csv")).good());  // sampling logs no values
  // samples.json: enough to repeat the run.
  std::ifstream record(dir_cc.file("samples.json"));
  const std::string text((std::istreambuf_iterator<char>(record)),
                         std::istreambuf_iterator<char>());
  for (const std::string want :
       {"\"model_path\"", "unet_tiny_cc.weights.safetensors", "\"seed\": 7", "\"steps\": 5",
        "\"class_cond\": \"True\"", "\"time\": \"20"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
}

// --save_pngs writes under a staging folder and moves the set into samples/ only once all
// are written: a run that fails (or is killed) half-way leaves no partial set there.
TEST(SampleCli, PngsAppearInSamplesOnlyAllTogether) {
  TempDir dir;
  auto run = [&dir] {
    return test::run_idiff(test::cat_args(
        std::vector<std::string>{"sample", "--model_path",
                                 test::data_path("unet_tiny.weights.safetensors"), "--num_samples",
                                 "3", "--batch_size", "3", "--log_dir", dir.path(), "--save_pngs",
                                 "True", "--seed", "7"},
        fixture_flags("unet_tiny"), std::vector<std::string>{"--timestep_respacing", "2"}));
  };
  // The second PNG cannot be written (a folder holds its name): the first was, but not in samples/.
  std::filesystem::create_directories(dir.file("samples.partial-seed7/seed7_000001.png/x"));
  auto r = run();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("seed7_000001.png"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("samples.partial-seed7/seed7_000000.png")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("samples")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("samples.json")));
  // Rerun: the set moves in whole, beside an earlier run's file, and the staging folder goes.
  std::filesystem::remove_all(dir.file("samples.partial-seed7"));
  std::filesystem::create_directories(dir.file("samples"));
  std::ofstream(dir.file("samples/seed3_000000.png")) << "earlier run";
  r = run();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"seed7_000000.png", "seed7_000002.png", "seed3_000000.png"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("samples/") + name))) << name;
  EXPECT_FALSE(std::filesystem::exists(dir.file("samples.partial-seed7")));
}

// ---- nll -------------------------------------------------------------------------------

using test::bpd_of;

TEST(NllCli, TrainingLowersBitsPerDim) {
  TempDir data, trained, untrained, eval_a, eval_b;
  test::write_shape_folder(data.path(), 8);
  const auto flags = test::cat_args(
      test::tiny_flags(), std::vector<std::string>{"--diffusion_steps", "50", "--device", "cpu"});
  auto train = [&](const TempDir& dir, const std::string& lr, const std::string& steps) {
    return test::run_idiff(
        test::cat_args(std::vector<std::string>{"train", "--data_dir", data.path(), "--log_dir",
                                                dir.path(), "--batch_size", "8", "--lr", lr,
                                                "--max_steps", steps, "--log_interval", "10"},
                       flags));
  };
  ASSERT_EQ(train(trained, "2e-3", "40").exit_code, 0);
  ASSERT_EQ(train(untrained, "0", "1").exit_code, 0);  // lr 0: the initial weights
  auto nll = [&](const std::string& model, const TempDir& dir) {
    return test::run_idiff(
        test::cat_args(std::vector<std::string>{"nll", "--model_path", model, "--data_dir",
                                                data.path(), "--num_samples", "4", "--batch_size",
                                                "4", "--log_dir", dir.path()},
                       flags));
  };
  const auto a = nll(trained.file("model000040.pt"), eval_a);
  const auto b = nll(untrained.file("model000001.pt"), eval_b);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const double bpd_trained = bpd_of(a.out), bpd_untrained = bpd_of(b.out);
  EXPECT_TRUE(std::isfinite(bpd_trained));
  EXPECT_LT(bpd_trained, bpd_untrained);
  for (const std::string term : {"vb", "mse", "xstart_mse"}) {
    const at::Tensor t = read_npz(eval_a.file(term + "_terms.npz")).at("arr_0");
    EXPECT_EQ(t.sizes(), (at::IntArrayRef{50})) << term;
  }
}

TEST(NllCli, EqualsTheLibrarysCalcBpdLoop) {
  TempDir data, dir;
  test::write_shape_folder(data.path(), 4);
  const auto flags = test::cat_args(fixture_flags("unet_tiny"),
                                    std::vector<std::string>{"--timestep_respacing", "8"});
  const auto r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"nll", "--model_path",
                               test::data_path("unet_tiny.weights.safetensors"), "--data_dir",
                               data.path(), "--num_samples", "4", "--batch_size", "2", "--log_dir",
                               dir.path(), "--device", "cpu", "--seed", "11"},
      flags));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The same evaluation through the library.
  const auto meta = test::load_json("unet_tiny.json");
  ModelConfig m = test::model_config_from_flags(meta["flags"]);
  DiffusionConfig d = test::diffusion_config_from_flags(meta["flags"]);
  d.timestep_respacing = "8";
  UNetModel model = create_model(m);
  load_state_dict(*model, test::load_fixture("unet_tiny.weights.safetensors"), "fixture");
  model->eval();
  const GaussianDiffusion diffusion = create_gaussian_diffusion(d);
  DataConfig dc;
  dc.data_dir = data.path();
  dc.batch_size = 2;
  dc.image_size = 32;
  dc.deterministic = true;
  dc.num_workers = 0;
  auto loader = load_data(dc);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  ModelFn fn = [&model](const at::Tensor& x, const at::Tensor& t) { return model->forward(x, t); };
  at::NoGradGuard no_grad;
  double bpd = 0;
  at::Tensor vb;
  for (int b = 0; b < 2; ++b) {
    const BpdResult res = diffusion.calc_bpd_loop(fn, loader->next().images, true, gen);
    bpd += res.total_bpd.mean().item<double>() / 2;
    vb = vb.defined() ? vb + res.vb.mean(0) / 2 : res.vb.mean(0) / 2;
  }
  EXPECT_NEAR(bpd_of(r.out), bpd, 1e-6 * std::abs(bpd));
  EXPECT_CLOSE(read_npz(dir.file("vb_terms.npz")).at("arr_0"), vb, 1e-5);
}

// ---- super-resolution ------------------------------------------------------------------

TEST(SuperResCli, TrainsAndUpsamplesASamplesFile) {
  TempDir data, run, out;
  test::write_shape_folder(data.path(), 6);
  const std::vector<std::string> model = {"--large_size",
                                          "64",
                                          "--small_size",
                                          "32",
                                          "--num_channels",
                                          "32",
                                          "--num_res_blocks",
                                          "1",
                                          "--attention_resolutions",
                                          "",
                                          "--learn_sigma",
                                          "True",
                                          "--device",
                                          "cpu"};
  auto r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"super-res-train", "--data_dir", data.path(), "--log_dir",
                               run.path(), "--batch_size", "2", "--max_steps", "2"},
      model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Base samples: three 32x32 images as `idiff sample` writes them.
  TensorMap base;
  base.insert("arr_0", at::randint(0, 256, {3, 32, 32, 3}, at::kByte));
  write_npz(out.file("base.npz"), base);
  r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"super-res-sample", "--model_path", run.file("ema_0.9999_000002.pt"),
                               "--base_samples", out.file("base.npz"), "--num_samples", "3",
                               "--batch_size", "2", "--timestep_respacing", "4", "--log_dir",
                               out.path()},
      model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const at::Tensor up = read_npz(samples_file(out, 3, 64)).at("arr_0");
  EXPECT_EQ(up.sizes(), (at::IntArrayRef{3, 64, 64, 3}));
  // Bad base samples.
  TensorMap wrong;
  wrong.insert("arr_0", at::zeros({3, 16, 16, 3}, at::kByte));
  write_npz(out.file("wrong.npz"), wrong);
  for (const auto& [file, msg] : std::vector<std::pair<std::string, std::string>>{
           {out.file("missing.npz"), "missing.npz"},
           {out.file("wrong.npz"), "images are 16x16 but --small_size is 32"},
           {test::data_path("unet_tiny.json"), "unet_tiny.json"}}) {
    r = test::run_idiff(test::cat_args(
        std::vector<std::string>{"super-res-sample", "--model_path",
                                 run.file("ema_0.9999_000002.pt"), "--base_samples", file,
                                 "--num_samples", "1", "--log_dir", out.path()},
        model));
    EXPECT_NE(r.exit_code, 0) << file;
    EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  }
}

// ---- errors ----------------------------------------------------------------------------

TEST(SampleErrors, BadInputsAreClearErrors) {
  TempDir dir;
  const std::string model = test::data_path("unet_tiny.weights.safetensors");
  auto run = [&](std::vector<std::string> extra) {
    return test::run_idiff(test::cat_args(
        std::vector<std::string>{"sample", "--log_dir", dir.path(), "--device", "cpu"},
        fixture_flags("unet_tiny"), std::vector<std::string>{"--timestep_respacing", "2"}, extra));
  };
  auto r = run({"--model_path", model, "--num_channels", "64"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("has 32 channels where --num_channels is 64"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--num_channels 32"), std::string::npos) << r.err;  // the suggested flags
  // The width is compared before the model is built: flags that would make it huge cost
  // nothing (this one would need ~40 GB).
  r = run({"--model_path", model, "--num_channels", "16384", "--image_size", "512"});
  EXPECT_NE(r.err.find("has 32 channels where --num_channels is 16384"), std::string::npos)
      << r.err;
  r = run({"--model_path", model, "--learn_sigma", "False"});
  EXPECT_NE(r.err.find("mis-shaped keys"), std::string::npos) << r.err;  // other shapes: listed
  r = run({"--model_path", model, "--num_samples", "0"});
  EXPECT_NE(r.err.find("--num_samples: 0 is out of range"), std::string::npos) << r.err;
  r = run({"--model_path", model, "--class", "3"});
  EXPECT_NE(r.err.find("needs a class-conditional model"), std::string::npos) << r.err;
  r = run({"--model_path", model, "--class_cond", "True"});
  EXPECT_NE(r.err.find("missing keys (1): label_emb.weight"), std::string::npos) << r.err;
  r = run({"--model_path", dir.file("nope.pt")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nope.pt"), std::string::npos) << r.err;
  r = run({});
  EXPECT_NE(r.err.find("--model_path is required"), std::string::npos) << r.err;
  TensorMap noise;
  noise.insert("x", at::zeros({1, 3, 32, 32}));
  write_npz(dir.file("noise.npz"), noise);
  r = run({"--model_path", model, "--num_samples", "2", "--initial_noise", dir.file("noise.npz")});
  EXPECT_NE(r.err.find("expected x_T of shape [2, 3, 32, 32]"), std::string::npos) << r.err;
  r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"sample", "--model_path",
                                              test::data_path("unet_tiny_cc.weights.safetensors"),
                                              "--class", "5000", "--log_dir", dir.path()},
                     fixture_flags("unet_tiny_cc")));
  EXPECT_NE(r.err.find("--class: 5000 is not a class"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace idiff
