// `idiff train|sample|nll --device cuda` end to end, ctest label `gpu` (skipped without a
// device): bf16 training tracks float32 over 200 steps of the tiny config, checkpointed
// bf16 training is the plain one, samples and bits/dim on CUDA equal the CPU's (the noise
// comes from the same CPU generator), and a one-rank launch trains through NCCL like the
// plain run.
#include "test_dist_util.h"
#include "test_train_util.h"

#include "idiff/io/tensor_file.h"

#include <torch/cuda.h>

#include <iostream>

namespace idiff {
namespace {

using test::cat_args;
using test::progress_column;
using test::TempDir;

std::vector<std::string> train_args(const std::string& data, const TempDir& dir,
                                    std::vector<std::string> extra) {
  return cat_args(std::vector<std::string>{"train", "--data_dir", data, "--log_dir", dir.path(),
                                           "--batch_size", "8", "--lr", "2e-3", "--seed", "3",
                                           "--device", "cuda", "--num_workers", "1"},
                  test::tiny_flags(), extra);
}

void expect_all_finite(const std::vector<double>& v, const std::string& what) {
  ASSERT_FALSE(v.empty()) << what;
  for (size_t i = 0; i < v.size(); ++i) EXPECT_TRUE(std::isfinite(v[i])) << what << " row " << i;
}

// The tiny config trained 200 steps in float32 and in bf16 autocast with the same seed
// (same batches, timesteps and noise): bf16 stays finite, learns, and its mean loss over
// the last 50 steps is within 15% of float32's.
TEST(GpuTrainCli, Bf16TracksFloat32Over200Steps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir data, fp32, bf16;
  test::write_shape_folder(data.path());
  const std::vector<std::string> run = {"--max_steps", "200", "--log_interval", "50"};
  for (const auto& [dir, precision] : {std::pair{&fp32, "fp32"}, std::pair{&bf16, "bf16"}}) {
    const auto r = test::run_idiff(train_args(
        data.path(), *dir, cat_args(run, std::vector<std::string>{"--precision", precision})));
    ASSERT_EQ(r.exit_code, 0) << precision << ": " << r.err;
    EXPECT_TRUE(std::ifstream(dir->file("model000200.pt")).good()) << precision;
  }
  const auto a = progress_column(fp32.file("progress.csv"), "loss");
  const auto b = progress_column(bf16.file("progress.csv"), "loss");
  expect_all_finite(a, "fp32 loss");
  expect_all_finite(b, "bf16 loss");
  expect_all_finite(progress_column(bf16.file("progress.csv"), "grad_norm"), "bf16 grad_norm");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  std::cout << "[measured] loss per 50 steps, fp32:";
  for (double v : a) std::cout << " " << v;
  std::cout << "; bf16:";
  for (double v : b) std::cout << " " << v;
  std::cout << "\n";
  EXPECT_LT(a.back(), 0.9 * a.front());
  EXPECT_LT(b.back(), 0.9 * b.front());
  EXPECT_NEAR(b.back(), a.back(), 0.15 * a.back());
}

// --use_checkpoint under bf16: the same losses step by step as without (the first step's
// weights are the same, so its loss is the same computation).
TEST(GpuTrainCli, CheckpointedBf16TrainingIsThePlainOne) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir data, plain, ckpt;
  test::write_shape_folder(data.path());
  const std::vector<std::string> run = {"--max_steps", "3",    "--log_interval",          "1",
                                        "--precision", "bf16", "--attention_resolutions", "16,8"};
  auto r = test::run_idiff(train_args(data.path(), plain, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_idiff(train_args(
      data.path(), ckpt, cat_args(run, std::vector<std::string>{"--use_checkpoint", "True"})));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto a = progress_column(plain.file("progress.csv"), "loss");
  const auto b = progress_column(ckpt.file("progress.csv"), "loss");
  expect_all_finite(b, "checkpointed loss");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_NEAR(b[0], a[0], 1e-3 * a[0]);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 2e-2 * a[i]) << "step " << i + 1;
}

// `command` on the tiny fixture UNet; `extra` comes after the fixture's flags, so it wins.
std::vector<std::string> fixture_args(const std::string& command, const TempDir& dir,
                                      const std::string& device, std::vector<std::string> extra) {
  return cat_args(
      std::vector<std::string>{command, "--model_path",
                               test::data_path("unet_tiny.weights.safetensors"), "--log_dir",
                               dir.path(), "--device", device, "--seed", "11", "--batch_size", "2"},
      test::fixture_flags("unet_tiny"), extra);
}

// The fixture UNet sampled on CUDA (graphs) and on the CPU from the same seed: DDIM and the
// reference's ancestral sampler give the same images (TF32 convolutions on CUDA, as
// PyTorch's default: ~1e-3).
TEST(GpuSampleCli, CudaSamplesEqualTheCpuOnes) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::vector<std::string>> samplers = {{"--sampler", "ddim", "--steps", "10"},
                                                          {"--timestep_respacing", "25"}};
  for (const auto& sampler : samplers) {
    TempDir cpu, cuda;
    const auto common = cat_args(
        sampler,
        std::vector<std::string>{"--num_samples", "3", "--save_float", "True", "--grid_size", "0"});
    for (const auto& [dir, device] : {std::pair{&cpu, "cpu"}, std::pair{&cuda, "cuda"}}) {
      const auto r = test::run_idiff(fixture_args("sample", *dir, device, common));
      ASSERT_EQ(r.exit_code, 0) << device << ": " << r.err;
    }
    const at::Tensor a = load_tensor_file(cpu.file("samples_float.safetensors")).at("samples");
    const at::Tensor b = load_tensor_file(cuda.file("samples_float.safetensors")).at("samples");
    std::cout << "[measured] " << sampler[1] << ": CUDA vs CPU samples " << test::rel_error(b, a)
              << "\n";
    EXPECT_CLOSE(b, a, 1e-2) << sampler[1];
  }
}

TEST(GpuNllCli, CudaBitsPerDimEqualTheCpus) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir data, cpu, cuda;
  test::write_shape_folder(data.path(), 4);
  const std::vector<std::string> extra = {"--data_dir",           data.path(), "--num_samples", "4",
                                          "--timestep_respacing", "8"};
  double bpd[2];
  int i = 0;
  for (const auto& [dir, device] : {std::pair{&cpu, "cpu"}, std::pair{&cuda, "cuda"}}) {
    const auto r = test::run_idiff(fixture_args("nll", *dir, device, extra));
    ASSERT_EQ(r.exit_code, 0) << device << ": " << r.err;
    bpd[i++] = test::bpd_of(r.out);
  }
  std::cout << "[measured] bits/dim CPU " << bpd[0] << ", CUDA " << bpd[1] << "\n";
  EXPECT_NEAR(bpd[1], bpd[0], 1e-3 * bpd[0]);
}

// WORLD_SIZE=1 under a launcher with --device cuda: a real NCCL group, and the plain run's
// losses (cuDNN's autotuning may pick other kernels in the two processes: not bit for bit).
TEST(GpuDistCli, OneRankNcclTrainingIsThePlainRun) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir data, dir, one, plain;
  test::write_shape_folder(data.path(), 8);
  const std::vector<std::string> run = {"--max_steps", "3", "--log_interval", "1"};
  std::vector<std::string> argv = {IDIFF_EXE};
  const auto args = train_args(data.path(), one, run);
  argv.insert(argv.end(), args.begin(), args.end());
  test::LaunchedRanks ranks = test::start_ranks({argv}, dir.path());
  ranks.wait_all();
  ASSERT_EQ(ranks.codes, (std::vector<int>{0})) << ranks.describe();
  EXPECT_CONTAINS(ranks.ranks[0]->out(), "distributed: rank 0 of 1");
  EXPECT_CONTAINS(ranks.ranks[0]->out(), "nccl on cuda:0");
  const auto r = test::run_idiff(train_args(data.path(), plain, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto a = progress_column(plain.file("progress.csv"), "loss");
  const auto b = progress_column(one.file("progress.csv"), "loss");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-3 * a[i]) << "step " << i + 1;
}

}  // namespace
}  // namespace idiff
