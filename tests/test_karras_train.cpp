// `idiff edm-train` (consistency_models' scripts/edm_train.py): the EDM objective through
// the one TrainLoop, from the command line. The loss falls, a resumed run repeats the
// straight one, the checkpoints are in consistency_models' layout and `idiff sample` reads
// them.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/io/tensor_file.h"
#include "idiff/train/training_objective.h"

#include <fstream>

namespace idiff::test {
namespace {

std::vector<std::string> edm_flags() {
  return {"--image_size",        "32", "--num_channels",          "32",
          "--num_res_blocks",    "1",  "--attention_resolutions", "8",
          "--num_head_channels", "16"};
}

TEST(KarrasTrain, EdmObjectiveDrawsLognormalLevelsAndTheReferenceLoss) {
  const KarrasParams p;
  const auto objective = make_edm_objective(p);
  at::manual_seed(2);
  TrainBatch batch;
  batch.images = at::rand({64, 3, 4, 4}) * 2 - 1;
  const ObjectiveDraws d = objective->draw(batch, batch.images);
  // log sigma ~ N(-1.2, 1.2^2): the mean of 64 draws within 4.5 standard errors.
  EXPECT_NEAR(d.sigmas.log().mean().item<double>(), -1.2, 4.5 * 1.2 / 8);
  EXPECT_TRUE(at::equal(d.weights, at::ones({64})));
  EXPECT_GE(d.t.min().item<int64_t>(), 0);
  EXPECT_LT(d.t.max().item<int64_t>(), objective->num_timesteps());
  const ModelFn model = [](const at::Tensor& x, const at::Tensor&) { return at::tanh(x); };
  const LossTerms got = objective->losses(model, batch.images, d, 0, 64, {});
  const LossTerms want = KarrasDenoiser(p).training_losses(model, batch.images, d.sigmas, d.noise);
  EXPECT_TRUE(at::equal(got.at("loss"), want.at("loss")));
}

TEST(KarrasTrain, EdmTrainLossFallsResumesExactlyAndSamples) {
  TempDir data, straight, first, second, samples;
  write_shape_folder(data.path(), 10);
  const auto common =
      cat_args(std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--batch_size", "4",
                                        "--save_interval", "3", "--device", "cpu", "--seed", "3",
                                        "--ema_rate", "0.9", "--lr", "2e-3", "--log_interval", "1"},
               edm_flags());
  auto r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", straight.path(), "--max_steps", "6"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("objective: edm"), std::string::npos) << r.out;
  r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", first.path(), "--max_steps", "3"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_idiff(cat_args(
      common, std::vector<std::string>{"--log_dir", second.path(), "--max_steps", "6",
                                       "--resume_checkpoint", first.file("model000003.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string name : {"model000006.pt", "ema_0.9_000006.pt"}) {
    const TensorMap a = load_tensor_file(straight.file(name)),
                    b = load_tensor_file(second.file(name));
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [key, t] : a) EXPECT_CLOSE(b.at(key), t, 1e-6) << name << " " << key;
    // consistency_models' layout: the attention as 1x1 Conv2d weights.
    EXPECT_EQ(a.at("middle_block.1.qkv.weight").dim(), 4);
  }
  // No model flags: the checkpoint's flags.json gives them, --training_mode edm included.
  r = run_idiff({"sample", straight.file("ema_0.9_000006.pt"), "--num_samples", "2", "--steps", "3",
                 "--log_dir", samples.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--training_mode edm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("heun, 3 steps"), std::string::npos) << r.out;
  EXPECT_TRUE(std::ifstream(samples.file("samples_2x32x32x3.npz")).good());
}

// A given flag wins over the checkpoint's: another width no longer fits the weights.
TEST(KarrasTrain, GivenFlagsWinOverTheCheckpointsFlags) {
  TempDir data, dir, out;
  write_shape_folder(data.path(), 4);
  auto r = run_idiff(cat_args(
      std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--batch_size", "2",
                               "--max_steps", "1", "--device", "cpu", "--log_dir", dir.path()},
      edm_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_idiff({"sample", dir.file("model000001.pt"), "--num_channels", "64", "--num_samples", "1",
                 "--log_dir", out.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("has 32 channels where --num_channels is 64"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("--num_channels 32"), std::string::npos) << r.out;
}

TEST(KarrasTrain, LossFallsOnTheShapes) {
  TempDir data, dir;
  write_shape_folder(data.path());
  const auto r = run_idiff(cat_args(
      std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--log_dir", dir.path(),
                               "--batch_size", "8", "--lr", "2e-3", "--max_steps", "30",
                               "--log_interval", "5", "--device", "cpu", "--num_workers", "1",
                               // RAdam, the default, warms up over thousands of steps; 30
                               // steps here check the objective.
                               "--optimizer", "adamw"},
      edm_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto losses = progress_column(dir.file("progress.csv"), "loss");
  ASSERT_GE(losses.size(), 6u);
  EXPECT_LT(losses.back(), 0.7 * losses.front())
      << "first " << losses.front() << " last " << losses.back();
}

}  // namespace
}  // namespace idiff::test
