// The training loop: it learns, microbatching and resuming do not change the result, fp16
// loss scaling skips bad steps, checkpoints are the reference's files, and bad flags,
// bad data, signals and crashes are handled.
#include "test_train_util.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/adamw.h"
#include "idiff/train/ema.h"
#include "idiff/train/optimizer_file.h"
#include "idiff/train/train_loop.h"

#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <fstream>
#include <limits>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>

namespace idiff {
namespace {

using test::TempDir;

// Deterministic synthetic batches: a fixed pool of smooth images, batch k = images
// (k * n .. k * n + n) of the pool.
BatchFn pool_batches(int64_t batch_size, bool labels = false) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const at::Tensor pool = at::rand({16, 3, 8, 8}, gen).mul(2).sub(1);
  const at::Tensor big = at::upsample_bilinear2d(pool, {32, 32}, false);
  return [big, batch_size, labels](int64_t step) {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < batch_size; ++i) idx.push_back((step * batch_size + i) % 16);
    const at::Tensor index = at::tensor(idx);
    TrainBatch b;
    b.images = big.index_select(0, index);
    if (labels) b.kwargs.y = index % 3;
    return b;
  };
}

TrainConfig tiny_train(const std::string& dir) {
  TrainConfig t;
  t.batch_size = 4;
  t.lr = 1e-3;
  t.log_dir = dir;
  t.log_interval = 1;
  t.save_interval = 1000;
  t.device = "cpu";
  return t;
}

struct Rig {
  UNetModel model{nullptr};
  GaussianDiffusion diffusion;
  Rig(const ModelConfig& m, const DiffusionConfig& d, uint64_t seed)
      : model((at::manual_seed(seed), create_model(m))), diffusion(create_gaussian_diffusion(d)) {}
};

std::vector<at::Tensor> params_of(const TrainLoop& loop) {
  return clone_tensors(loop.master_params());
}

double max_rel_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  std::vector<at::Tensor> fa, fb;
  for (size_t i = 0; i < a.size(); ++i) {
    fa.push_back(a[i].reshape({-1}));
    fb.push_back(b[i].reshape({-1}));
  }
  return test::rel_error(at::cat(fa), at::cat(fb));
}

TEST(TrainLoop, MicrobatchGivesTheFullBatchUpdate) {
  TempDir a_dir, b_dir;
  const auto m = test::tiny_model();
  const auto d = test::tiny_diffusion();
  Rig a(m, d, 1), b(m, d, 1);
  Logger la(a_dir.path(), true), lb(b_dir.path(), true);
  TrainConfig ca = tiny_train(a_dir.path()), cb = tiny_train(b_dir.path());
  cb.microbatch = 2;
  TrainLoop full(a.model, a.diffusion, create_named_schedule_sampler("uniform", a.diffusion),
                 pool_batches(4), ca, la, at::kCPU);
  TrainLoop micro(b.model, b.diffusion, create_named_schedule_sampler("uniform", b.diffusion),
                  pool_batches(4), cb, lb, at::kCPU);
  ASSERT_EQ(max_rel_diff(params_of(full), params_of(micro)), 0.0);
  const auto before = params_of(full);
  for (int64_t s = 0; s < 2; ++s) {
    full.run_step(pool_batches(4)(s));
    micro.run_step(pool_batches(4)(s));
  }
  EXPECT_GT(max_rel_diff(params_of(full), before), 1e-4);  // it did train
  EXPECT_LE(max_rel_diff(params_of(micro), params_of(full)), 1e-5);
  full.dump_logs();
  micro.dump_logs();
  EXPECT_NEAR(full.last_logged().at("loss"), micro.last_logged().at("loss"), 1e-5);
  EXPECT_NEAR(full.last_logged().at("grad_norm"), micro.last_logged().at("grad_norm"), 1e-4);
}

}  // namespace

// The loop's fp16 loss scale, which only tests set.
struct TrainLoopTesting {
  static void set_lg_loss_scale(TrainLoop& loop, double v) { loop.lg_loss_scale_ = v; }
};

namespace {

TEST(TrainLoop, Fp16SkipsTheStepOnInfGradientsAndLowersTheScale) {
  TempDir dir;
  Rig s(test::tiny_model(), test::tiny_diffusion(), 2);
  Logger logger(dir.path(), true);
  TrainConfig c = tiny_train(dir.path());
  c.use_fp16 = true;
  TrainLoop loop(s.model, s.diffusion, create_named_schedule_sampler("uniform", s.diffusion),
                 pool_batches(4), c, logger, at::kCPU);
  EXPECT_EQ(s.model->inner_dtype(), at::kHalf);
  EXPECT_EQ(loop.master_params().size(), 1u);  // one flat float32 master copy
  // 2^200 overflows: the scaled gradients are not finite, so the step must be skipped.
  TrainLoopTesting::set_lg_loss_scale(loop, 200.0);
  const auto before = params_of(loop);
  loop.run_step(pool_batches(4)(0));
  EXPECT_EQ(loop.lg_loss_scale(), 199.0);
  EXPECT_EQ(max_rel_diff(params_of(loop), before), 0.0);
  // A sane scale trains and grows by fp16_scale_growth.
  TrainLoopTesting::set_lg_loss_scale(loop, 10.0);
  loop.run_step(pool_batches(4)(1));
  EXPECT_DOUBLE_EQ(loop.lg_loss_scale(), 10.0 + c.fp16_scale_growth);
  EXPECT_GT(max_rel_diff(params_of(loop), before), 1e-5);
  // The model's half weights follow the master copy.
  const auto sd = state_dict(*s.model);
  EXPECT_EQ(sd.at("input_blocks.1.0.in_layers.2.weight").scalar_type(), at::kHalf);
  EXPECT_EQ(sd.at("out.2.weight").scalar_type(), at::kFloat);
}

// Weights that became NaN are never written as a checkpoint, even when no loss was seen
// non-finite, and the error names the last good checkpoint.
TEST(TrainLoop, NonFiniteWeightsAreNeverSaved) {
  TempDir dir;
  Rig s(test::tiny_model(), test::tiny_diffusion(), 4);
  Logger logger(dir.path(), true);
  TrainLoop loop(s.model, s.diffusion, create_named_schedule_sampler("uniform", s.diffusion),
                 pool_batches(4), tiny_train(dir.path()), logger, at::kCPU);
  loop.run_step(pool_batches(4)(0));
  loop.save();  // finite: saved
  EXPECT_TRUE(std::ifstream(dir.file("model000001.pt")).good());
  loop.run_step(pool_batches(4)(1));
  {
    at::NoGradGuard no_grad;
    loop.master_params()[0].view({-1})[0].fill_(std::numeric_limits<float>::infinity());
  }
  const std::string err = test::error_of([&] { loop.save(); });
  EXPECT_NE(err.find("the weights became non-finite (NaN or inf) by step 2; not saving them as a "
                     "checkpoint (the last good one: step 1)"),
            std::string::npos)
      << err;
  EXPECT_FALSE(std::ifstream(dir.file("model000002.pt")).good());
}

TEST(TrainLoop, EmaTracksTheParameters) {
  TempDir dir;
  Rig s(test::tiny_model(), test::tiny_diffusion(), 3);
  Logger logger(dir.path(), true);
  TrainConfig c = tiny_train(dir.path());
  c.ema_rate = "0.5,0.9";
  TrainLoop loop(s.model, s.diffusion, create_named_schedule_sampler("uniform", s.diffusion),
                 pool_batches(4), c, logger, at::kCPU);
  auto ema_expected = std::vector<std::vector<at::Tensor>>{params_of(loop), params_of(loop)};
  for (int64_t step = 0; step < 3; ++step) {
    loop.run_step(pool_batches(4)(step));
    const auto p = params_of(loop);
    for (int r = 0; r < 2; ++r) {
      const double rate = r == 0 ? 0.5 : 0.9;
      for (size_t i = 0; i < p.size(); ++i) {
        ema_expected[r][i] = ema_expected[r][i] * rate + p[i] * (1 - rate);
      }
    }
  }
  EXPECT_LE(max_rel_diff(loop.ema_params()[0], ema_expected[0]), 1e-6);
  EXPECT_LE(max_rel_diff(loop.ema_params()[1], ema_expected[1]), 1e-6);
}

TEST(TrainLoop, CheckpointIsTheReferencesStateDict) {
  TempDir dir;
  const auto meta = test::load_json("unet_tiny.json");
  const ModelConfig m = test::model_config_from_flags(meta["flags"]);
  const DiffusionConfig d = test::diffusion_config_from_flags(meta["flags"]);
  Rig s(m, d, 4);
  load_state_dict(*s.model, test::load_fixture("unet_tiny.weights.safetensors"), "fixture");
  Logger logger(dir.path(), true);
  TrainLoop loop(s.model, s.diffusion, create_named_schedule_sampler("uniform", s.diffusion),
                 pool_batches(4), tiny_train(dir.path()), logger, at::kCPU);
  loop.save();
  const std::string ckpt = dir.file("model000000.pt");
  ASSERT_TRUE(std::ifstream(ckpt).good());
  ASSERT_TRUE(std::ifstream(dir.file("ema_0.9999_000000.pt")).good());
  ASSERT_TRUE(std::ifstream(dir.file("opt000000.pt")).good());
  // Python: torch.load(weights_only=True), the reference's keys in order, the same values.
  const auto r = test::run_shell("cd " + std::string(IDIFF_TEST_SCRIPTS_DIR) + " && " +
                                 test::python() + " check_train_checkpoint.py " + ckpt + " " +
                                 test::data_path("unet_tiny.json") + " " +
                                 test::data_path("unet_tiny.weights.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // Loaded back into a fresh model, it gives the reference's output.
  at::manual_seed(9);
  UNetModel fresh = create_model(m);
  load_state_dict(*fresh, load_tensor_file(ckpt), ckpt);
  fresh->eval();
  const TensorMap io = test::load_fixture("unet_tiny.io.safetensors");
  at::NoGradGuard no_grad;
  EXPECT_CLOSE(fresh->forward(io.at("x"), io.at("t")), io.at("out"), 1e-4);
}

TEST(TrainLoop, NamesAndStepParsingFollowTheReference) {
  EXPECT_EQ(parse_resume_step_from_filename("/a/b/model012345.pt"), 12345);
  EXPECT_EQ(parse_resume_step_from_filename("/models/run/model000100.pt"), 100);
  EXPECT_EQ(parse_resume_step_from_filename("/a/b/checkpoint.pt"), 0);
  EXPECT_EQ(parse_resume_step_from_filename("modelfinal.pt"), 0);
  EXPECT_EQ(ema_checkpoint_name(0.9999, 200000), "ema_0.9999_200000.pt");
  EXPECT_EQ(ema_checkpoint_name(0.999, 5), "ema_0.999_000005.pt");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A damaged or foreign optimizer file is refused when it is read, naming it (not steps later
// as non-finite weights with a hint to lower --lr).
TEST(TrainErrors, DamagedOrForeignOptimizerFilesNameTheFile) {
  TempDir dir;
  const auto adam = [](std::vector<std::vector<int64_t>> shapes) {
    std::vector<at::Tensor> params;
    for (const auto& s : shapes) params.push_back(at::zeros(s).requires_grad_());
    return AdamW(params, AdamWOptions{});
  };
  const auto with_state = [](AdamW& opt, float value) {
    std::vector<AdamWParamState> state;
    for (const auto& p : opt.params())
      state.push_back({at::ones({}), at::full(p.sizes(), value), at::ones(p.sizes())});
    opt.set_state(state);
  };
  AdamW good = adam({{2, 3}, {4}});
  with_state(good, 0.5f);
  save_optimizer_file(dir.file("good.pt"), good);
  AdamW into = adam({{2, 3}, {4}});
  load_optimizer_file(dir.file("good.pt"), into, {{2, 3}, {4}});
  EXPECT_TRUE(at::equal(into.state()[0].exp_avg, at::full({2, 3}, 0.5f)));

  AdamW damaged = adam({{2, 3}, {4}});
  with_state(damaged, std::nanf(""));
  save_optimizer_file(dir.file("nan.pt"), damaged);
  std::string e = test::error_of([&] {
    load_optimizer_file(dir.file("nan.pt"), into, {{2, 3}, {4}});
  });
  EXPECT_NE(e.find(dir.file("nan.pt") + ": parameter 0's state holds NaN"), std::string::npos) << e;
  EXPECT_EQ(e.find("lr"), std::string::npos) << e;

  AdamW other = adam({{3, 2}, {4}});  // the same sizes, another shape
  e = test::error_of([&] { load_optimizer_file(dir.file("good.pt"), other, {{3, 2}, {4}}); });
  EXPECT_NE(e.find(dir.file("good.pt") + ": optimizer state of parameter 0 has shape [2, 3]"),
            std::string::npos)
      << e;
}

TEST(TrainErrors, ImpossibleSettingsAreClearErrors) {
  TempDir dir;
  Rig s(test::tiny_model(), test::tiny_diffusion(), 5);
  Logger logger(dir.path(), true);
  auto make = [&](TrainConfig c) {
    TrainLoop loop(s.model, s.diffusion, create_named_schedule_sampler("uniform", s.diffusion),
                   pool_batches(4), c, logger, at::kCPU);
  };
  TrainConfig c = tiny_train(dir.path());
  c.microbatch = 3;
  EXPECT_NE(error_of([&] { make(c); }).find("`batch_size` 4 is not a multiple of `microbatch` 3"),
            std::string::npos);
  c = tiny_train(dir.path());
  c.ema_rate = "0.9999,1.5";
  EXPECT_NE(error_of([&] { make(c); }).find("`ema_rate`: each rate must lie in (0, 1), got 1.5"),
            std::string::npos);
  c.ema_rate = "fast";
  EXPECT_NE(error_of([&] { make(c); }).find("`ema_rate`: 'fast' is not a number"),
            std::string::npos);
  c = tiny_train(dir.path());
  c.precision = "bf16";
  EXPECT_NE(error_of([&] { make(c); }).find("`precision` bf16 needs a CUDA device"),
            std::string::npos);
  c.precision = "fp8";
  EXPECT_NE(error_of([&] { make(c); }).find("`precision` 'fp8'"), std::string::npos);
  EXPECT_NE(error_of([&] {
              create_named_schedule_sampler("sometimes", s.diffusion);
            }).find("`schedule_sampler`"),
            std::string::npos);
}

// ---- through the command line ----------------------------------------------------------

// The loss column of a progress.csv.

void expect_loss_falls(const std::string& data_dir) {
  TempDir dir;
  const auto r = test::run_idiff(test::cat_args(
      {"train", "--data_dir", data_dir, "--log_dir", dir.path(), "--batch_size", "8", "--lr",
       "2e-3", "--max_steps", "30", "--log_interval", "5", "--device", "cpu", "--num_workers", "1"},
      test::tiny_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto losses = test::progress_column(dir.file("progress.csv"), "loss");
  ASSERT_GE(losses.size(), 6u);
  EXPECT_LT(losses.back(), 0.7 * losses.front())
      << "first " << losses.front() << " last " << losses.back();
  EXPECT_TRUE(std::ifstream(dir.file("model000030.pt")).good());
  EXPECT_TRUE(std::ifstream(dir.file("ema_0.9999_000030.pt")).good());
  EXPECT_TRUE(std::ifstream(dir.file("opt000030.pt")).good());
}

TEST(TrainCli, LossFallsOnAGeneratedImageFolder) {
  TempDir data;
  test::write_shape_folder(data.path());
  expect_loss_falls(data.path());
}

TEST(TrainCli, LossFallsOnFashionMnist) {
  expect_loss_falls("fashion-mnist");
}

TEST(TrainCli, ResumeRepeatsTheStraightRun) {
  TempDir data, straight, first, second;
  test::write_shape_folder(data.path(), 10);
  const auto common =
      test::cat_args({"train", "--data_dir", data.path(), "--batch_size", "4", "--save_interval",
                      "2", "--device", "cpu", "--seed", "3", "--ema_rate", "0.9,0.99"},
                     test::tiny_flags());
  auto r = test::run_idiff(test::cat_args(
      common, std::vector<std::string>{"--log_dir", straight.path(), "--max_steps", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_idiff(test::cat_args(
      common, std::vector<std::string>{"--log_dir", first.path(), "--max_steps", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_idiff(test::cat_args(
      common, std::vector<std::string>{"--log_dir", second.path(), "--max_steps", "4",
                                       "--resume_checkpoint", first.file("model000002.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loading optimizer state"), std::string::npos) << r.out;
  for (const std::string name : {"model000004.pt", "ema_0.9_000004.pt", "ema_0.99_000004.pt"}) {
    const TensorMap a = load_tensor_file(straight.file(name)),
                    b = load_tensor_file(second.file(name));
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [key, t] : a) EXPECT_CLOSE(b.at(key), t, 1e-6) << name << " " << key;
  }
  // Resumed in its own folder, a run continues its progress.csv: the earlier rows stay.
  const auto before = test::progress_column(first.file("progress.csv"), "step");
  r = test::run_idiff(test::cat_args(
      common,
      std::vector<std::string>{"--log_dir", first.path(), "--max_steps", "4", "--log_interval", "1",
                               "--resume_checkpoint", first.file("model000002.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto after = test::progress_column(first.file("progress.csv"), "step");
  ASSERT_EQ(after.size(), before.size() + 2) << "rows before " << before.size();
  EXPECT_EQ(std::vector<double>(after.begin(), after.begin() + before.size()), before);
  EXPECT_EQ(after.back(), 3.0);
}

TEST(TrainCli, SigintSavesAndExitsCleanly) {
  TempDir data, dir;
  test::write_shape_folder(data.path(), 8);
  const std::string cmd = std::string(IDIFF_EXE) + " train --data_dir " + data.path() +
                          " --log_dir " + dir.path() +
                          " --batch_size 2 --device cpu --log_interval 1 " +
                          "--image_size 32 --num_channels 32 --num_res_blocks 1 " +
                          "--attention_resolutions '' > " + dir.file("out.txt") + " 2>&1 & echo $!";
  const auto r = test::run_shell(cmd);
  const pid_t pid = std::stoi(r.out);
  // Wait until training is under way (the first log dump), then interrupt.
  for (int i = 0; i < 600; ++i) {
    std::ifstream csv(dir.file("progress.csv"));
    std::string header;
    if (std::getline(csv, header) && !header.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGINT);
  bool exited = false;
  for (int i = 0; i < 600 && !exited; ++i) {
    exited = ::kill(pid, 0) != 0;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(exited) << "idiff train did not stop after SIGINT";
  std::ifstream out(dir.file("out.txt"));
  const std::string text((std::istreambuf_iterator<char>(out)), {});
  EXPECT_NE(text.find("stopped by SIGINT after step"), std::string::npos) << text;
  // The checkpoint of the step it stopped at is there and loads.
  const auto pos = text.find("stopped by SIGINT after step ");
  const int step = std::stoi(text.substr(pos + 29));
  char name[64];
  std::snprintf(name, sizeof(name), "model%06d.pt", step);
  EXPECT_NO_THROW(load_tensor_file(dir.file(name))) << name;
}

TEST(TrainCli, AKilledRunLeavesOnlyCompleteCheckpoints) {
  TempDir data, dir;
  test::write_shape_folder(data.path(), 8);
  // SIGKILL at different moments after checkpoints start appearing (save_interval 1, so
  // a save is under way most of the time).
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::string log = dir.file("run" + std::to_string(attempt));
    const auto r = test::run_shell(
        std::string(IDIFF_EXE) + " train --data_dir " + data.path() + " --log_dir " + log +
        " --batch_size 2 --device cpu --save_interval 1 --image_size 32 --num_channels 32"
        " --num_res_blocks 1 --attention_resolutions '' > /dev/null 2>&1 & echo $!");
    const pid_t pid = std::stoi(r.out);
    for (int i = 0; i < 1200; ++i) {
      if (std::ifstream(log + "/model000001.pt").good()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + 300 * attempt));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  int checkpoints = 0;
  const auto listing = test::run_shell("cd " + dir.path() + " && ls run*/*");
  for (const auto& name : split(listing.out, '\n')) {
    if (name.empty()) continue;
    const std::string base = name.substr(name.find('/') + 1);
    if (base.size() > 3 && base.substr(base.size() - 3) == ".pt") {
      ++checkpoints;
      if (base.rfind("opt", 0) == 0) {
        EXPECT_NO_THROW(read_pt(dir.file(name))) << name << " is not a complete optimizer file";
      } else {
        EXPECT_NO_THROW(load_tensor_file(dir.file(name)))
            << name << " is not a complete checkpoint";
      }
    } else {
      // Nothing but logs and complete checkpoints: no temporary file posing as one.
      EXPECT_TRUE(base == "log.txt" || base == "progress.csv" || base == "flags.json" ||
                  base.find(".tmp") != std::string::npos)
          << name;
    }
  }
  EXPECT_GT(checkpoints, 0);
}

TEST(TrainCli, NonFiniteLossStopsWithoutSaving) {
  TempDir data, dir;
  test::write_shape_folder(data.path(), 8);
  const auto r = test::run_idiff(
      test::cat_args({"train", "--data_dir", data.path(), "--log_dir", dir.path(), "--batch_size",
                      "2", "--lr", "1e30", "--max_steps", "20", "--log_interval", "1",
                      "--save_interval", "100", "--device", "cpu"},
                     test::tiny_flags()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the loss became non-finite"), std::string::npos) << r.err;
  EXPECT_FALSE(std::ifstream(dir.file("model000020.pt")).good());
}

TEST(TrainCli, BadDataIsAClearError) {
  TempDir empty, bad, dir;
  auto train = [&](const std::string& data, std::vector<std::string> extra = {}) {
    return test::run_idiff(
        test::cat_args({"train", "--data_dir", data, "--log_dir", dir.path(), "--batch_size", "2",
                        "--max_steps", "1", "--device", "cpu"},
                       test::tiny_flags(), extra));
  };
  auto r = train(empty.path());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(empty.path()), std::string::npos) << r.err;
  r = train(empty.path() + "/missing");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
  test::write_shape_folder(bad.path(), 4);
  test::write_bytes(bad.file("disc_99.png"), "\x89PNG\r\n\x1a\n this is not a png");
  r = train(bad.path(), {"--batch_size", "5", "--max_steps", "2"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("disc_99.png"), std::string::npos) << r.err;
  r = train(bad.path(), {"--skip_bad_images", "True", "--batch_size", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = train(bad.path(), {"--schedule_sampler", "sometimes"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--schedule_sampler"), std::string::npos) << r.err;
  r = test::run_idiff({"train", "--log_dir", dir.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--data_dir is required"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace idiff
