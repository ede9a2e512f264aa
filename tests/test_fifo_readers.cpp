// Every flag that names a file, given a FIFO: refused with a line naming it, never read
// (a FIFO would block the reader forever). Each run is bounded by `timeout`, so a reader
// that blocks fails this test instead of hanging the suite.
#include "test_train_util.h"

#include "idiff/io/npz.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

namespace idiff {
namespace {

using test::TempDir;

std::string quoted(const std::vector<std::string>& args) {
  std::string cmd = std::string("timeout 60 ") + IDIFF_EXE;
  for (const auto& a : args) cmd += " '" + a + "'";
  return cmd;
}

TEST(FifoReaders, EveryFileFlagRefusesAFifo) {
  TempDir dir;
  const std::string fifo = dir.file("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const std::string model = test::data_path("unet_tiny.weights.safetensors");
  const std::vector<std::string> tiny = test::fixture_flags("unet_tiny");
  TensorMap npz;
  npz.insert("arr_0", at::zeros({2, 32, 32, 3}, at::kByte));
  write_npz(dir.file("a.npz"), npz);
  ASSERT_EQ(::mkdir(dir.file("images").c_str(), 0755), 0);
  ASSERT_EQ(::mkfifo(dir.file("images/x.png").c_str(), 0644), 0);
  const std::vector<std::string> sample =
      test::cat_args(std::vector<std::string>{"sample", "--num_samples", "1", "--device", "cpu",
                                              "--log_dir", dir.file("out"), "--seed", "0"},
                     tiny, std::vector<std::string>{"--timestep_respacing", ""});
  const std::vector<std::vector<std::string>> runs = {
      test::cat_args(sample, std::vector<std::string>{"--model_path", fifo}),
      test::cat_args(sample, std::vector<std::string>{"--model_path", model, "--steps_file", fifo}),
      test::cat_args(sample,
                     std::vector<std::string>{"--model_path", model, "--initial_noise", fifo}),
      test::cat_args(sample, std::vector<std::string>{"--model_path", model, "--init_image", fifo,
                                                      "--steps", "2", "--t_start", "2"}),
      test::cat_args(sample,
                     std::vector<std::string>{"--model_path", model, "--classifier_path", fifo}),
      {"super-res-sample", "--model_path", model, "--base_samples", fifo, "--device", "cpu"},
      {"eval", "--ref", fifo, "--samples", dir.file("a.npz"), "--device", "cpu"},
      {"eval", "--ref", dir.file("a.npz"), "--samples", dir.file("a.npz"), "--inception_path", fifo,
       "--device", "cpu"},
      {"eval", "--ref", dir.file("a.npz"), "--samples", dir.file("a.npz"), "--feature_model", fifo,
       "--image_size", "32", "--device", "cpu"},
      {"eval", "--ref", dir.file("images"), "--samples", dir.file("a.npz"), "--feature_model", fifo,
       "--device", "cpu"},
      test::cat_args(std::vector<std::string>{"serve", "--model_path", model, "--token_file", fifo,
                                              "--port", "0", "--device", "cpu"},
                     tiny),
      {"convert", fifo, dir.file("out.safetensors")},
      {"info", fifo},
      test::cat_args(std::vector<std::string>{"tune-steps", "--model_path", fifo, "--steps", "3",
                                              "--steps_file", dir.file("s.json"), "--device", "cpu",
                                              "--log_dir", dir.file("tune")},
                     tiny),
      test::cat_args(
          std::vector<std::string>{"train", "--data_dir", dir.file("images"), "--resume_checkpoint",
                                   fifo, "--device", "cpu", "--log_dir", dir.file("train")},
          tiny),
      test::cat_args(std::vector<std::string>{"nll", "--model_path", model, "--data_dir",
                                              dir.file("images"), "--device", "cpu",
                                              "--num_samples", "1", "--log_dir", dir.file("nll")},
                     tiny),
  };
  for (const auto& args : runs) {
    const auto r = test::run_shell(quoted(args));
    const std::string what = args[0] + " " + args[args.size() > 2 ? 2 : 1];
    EXPECT_NE(r.exit_code, 124) << what << ": blocked on the FIFO";
    EXPECT_NE(r.exit_code, 0) << what;
    EXPECT_NE(r.err.find("FIFO"), std::string::npos) << what << ": " << r.err;
  }
}

}  // namespace
}  // namespace idiff
