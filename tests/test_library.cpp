// idiff as a library and the --image_channels option: the library leaves process-wide
// state (the default random generators, signal handlers, the attention choice) as the
// caller had it, a StopCheck ends training saved, and grey models train, sample and plot
// end to end.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/common/progress.h"
#include "idiff/common/rng.h"
#include "idiff/data/data_loader.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/io/npz.h"
#include "idiff/model/factory.h"
#include "idiff/train/ema.h"
#include "idiff/train/train_loop.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>

namespace idiff {
namespace {

using test::TempDir;

TrainBatch noise_batch(int64_t step) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(step);
  TrainBatch b;
  b.images = at::rand({2, 3, 32, 32}, gen) * 2 - 1;
  return b;
}

// Trains the tiny model (initialised from seed 0) for `steps` steps into `dir` and returns
// the loop's final weights.
std::vector<at::Tensor> train_steps(const std::string& dir, int64_t steps, StopCheck stop = {}) {
  UNetModel model{nullptr};
  {
    ScopedSeed seed(0, c10::kCPU);
    model = create_model(test::tiny_model());
  }
  const GaussianDiffusion diffusion = create_gaussian_diffusion(test::tiny_diffusion());
  TrainConfig t;
  t.batch_size = 2;
  t.max_steps = steps;
  t.log_interval = 1;
  t.save_interval = 1000;
  Logger logger(dir, /*quiet=*/true);
  TrainLoop loop(model, diffusion, create_named_schedule_sampler("uniform", diffusion), noise_batch,
                 t, logger, c10::kCPU);
  loop.set_stop_check(std::move(stop));
  loop.run_loop();
  return clone_tensors(loop.master_params());
}

TEST(Library, TrainingLeavesTheCallersRandomStreamAlone) {
  TempDir a, b;
  at::manual_seed(123);
  const at::Tensor expected = at::randn({8});
  at::manual_seed(123);
  const auto first = train_steps(a.path(), 2);  // seeded initialisation and steps, restored
  EXPECT_TRUE(at::equal(at::randn({8}), expected)) << "the caller's random stream moved";
  // And the training itself does not depend on the caller's stream.
  at::manual_seed(999);
  const auto second = train_steps(b.path(), 2);
  ASSERT_EQ(first.size(), second.size());
  for (size_t i = 0; i < first.size(); ++i) EXPECT_TRUE(at::equal(first[i], second[i])) << i;
}

// Through a pipe or into a log file (stderr is not a terminal here) a long loop writes a
// line with the count, the rate and the time left, at most every line_interval seconds;
// rank 1 and more (enabled false) write nothing.
TEST(Library, ProgressWritesLinesWhenNotOnATerminal) {
  testing::internal::CaptureStderr();  // stderr is then a file, whatever ran the test
  {
    ProgressBar bar("sampling", 10, true, 0.0);
    bar.update(5);
    ProgressBar quiet("other", 10, false, 0.0);
    quiet.update(5);
    ProgressBar slow("slow", 10, true, 3600.0);
    slow.update(5);  // within its interval: nothing
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("sampling: 5/10 (50%), "), std::string::npos) << err;
  EXPECT_NE(err.find(" left\n"), std::string::npos) << err;
  EXPECT_EQ(err.find("other"), std::string::npos) << err;
  EXPECT_EQ(err.find("slow"), std::string::npos) << err;
  EXPECT_EQ(ProgressBar::format_duration(3725), "1h02m");
  EXPECT_EQ(ProgressBar::format_duration(275), "4m35s");
  EXPECT_EQ(ProgressBar::format_duration(12.4), "12s");
}

TEST(Library, InstallsNoSignalHandler) {
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGINT, nullptr, &before), 0);
  TempDir dir;
  train_steps(dir.path(), 1);
  struct sigaction after {};
  ASSERT_EQ(sigaction(SIGINT, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

TEST(Library, AStopCheckEndsTrainingAfterTheStepSaved) {
  TempDir dir;
  int calls = 0;
  train_steps(dir.path(), 10, [&calls] { return ++calls >= 3 ? std::string("test") : ""; });
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(std::ifstream(dir.file("model000003.pt")).good());
  EXPECT_FALSE(std::ifstream(dir.file("model000010.pt")).good());
}

TEST(Library, TheAttentionKernelIsChosenPerModel) {
  ModelConfig m = test::tiny_model();
  m.attention_resolutions = "16";
  UNetModel a = create_model(m), b = create_model(m);
  a->set_attention_impl(AttentionImpl::Einsum);
  int blocks = 0;
  for (const auto& module : b->modules(false)) {
    if (auto* block = module->as<AttentionBlockImpl>()) {
      EXPECT_EQ(block->impl(), AttentionImpl::Auto);
      ++blocks;
    }
  }
  EXPECT_GT(blocks, 0);
  for (const auto& module : a->modules(false)) {
    if (auto* block = module->as<AttentionBlockImpl>()) {
      EXPECT_EQ(block->impl(), AttentionImpl::Einsum);
    }
  }
}

TEST(GreyImages, RgbToGreyIsPillowsLumaAndKeepsGreyValues) {
  const at::Tensor grey = at::rand({2, 1, 4, 4}) * 2 - 1;
  EXPECT_CLOSE(rgb_to_grey(grey.expand({2, 3, 4, 4}).contiguous()), grey, 1e-6);
  const at::Tensor rgb = at::rand({1, 3, 2, 2}) * 2 - 1;
  const at::Tensor expected = rgb[0][0] * 0.299 + rgb[0][1] * 0.587 + rgb[0][2] * 0.114;
  EXPECT_CLOSE(rgb_to_grey(rgb)[0][0], expected, 1e-6);
}

TEST(GreyImages, TrainSampleInfoAndPlotWithOneChannel) {
  TempDir train, samples, plot;
  const auto flags = test::cat_args({"--image_channels", "1"}, test::tiny_flags());
  auto r = test::run_idiff(test::cat_args(
      {"train", "--data_dir", "fashion-mnist", "--log_dir", train.path(), "--batch_size", "4",
       "--max_steps", "3", "--log_interval", "1", "--device", "cpu", "--num_workers", "1"},
      flags));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The progress line: the step of the last, images/s and the time left.
  EXPECT_NE(r.out.find("step 3/3, "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" images/s, "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("s left"), std::string::npos) << r.out;

  r = test::run_idiff({"info", train.file("model000003.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--image_channels 1"), std::string::npos) << r.out;

  r = test::run_idiff(
      test::cat_args({"sample", "--model_path", train.file("ema_0.9999_000003.pt"), "--log_dir",
                      samples.path(), "--num_samples", "2", "--batch_size", "2", "--sampler",
                      "unipc", "--steps", "3", "--device", "cpu"},
                     flags));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TensorMap npz = read_npz(samples.file("samples_2x32x32x1.npz"));
  EXPECT_EQ(npz.at("arr_0").sizes(), (std::vector<int64_t>{2, 32, 32, 1}));
  EXPECT_TRUE(std::ifstream(samples.file("samples_grid.png")).good());

  // An RGB model's flags on the grey checkpoint (given: they win over the run's
  // flags.json): a clear error that says what the file is.
  r = test::run_idiff(test::cat_args(
      {"sample", "--model_path", train.file("model000003.pt"), "--log_dir", samples.path(),
       "--num_samples", "1", "--device", "cpu", "--image_channels", "3"},
      test::tiny_flags()));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--image_channels 1"), std::string::npos) << r.err;

  r = test::run_idiff(test::cat_args(
      {"train", "--data_dir", "fashion-mnist", "--image_channels", "2"}, test::tiny_flags()));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--image_channels must be 1 (grey) or 3 (RGB), got 2"), std::string::npos)
      << r.err;

  // The loss curve of the run (tools/plot_progress.py, as the demo draws it).
  const std::string tools = std::string(IDIFF_TEST_SCRIPTS_DIR) + "/../../tools";
  r = test::run_shell(test::python() + " " + tools + "/plot_progress.py " +
                      train.file("progress.csv") + " " + plot.file("loss.png"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream png(plot.file("loss.png"), std::ios::binary);
  char head[8] = {};
  png.read(head, 8);
  EXPECT_EQ(std::string(head + 1, 3), "PNG");
  r = test::run_shell(test::python() + " " + tools + "/plot_progress.py " + plot.file("none.csv") +
                      " " + plot.file("x.png"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("none.csv"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace idiff
