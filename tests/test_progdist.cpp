// Progressive distillation (`idiff cm-train --training_mode progdist`; consistency_models'
// progdist_losses with Salimans & Ho 2022's stages): the target is the x_0 of the teacher's
// two Euler steps, computed here by hand and, for a teacher that is a constant, in closed
// form; end to end the steps halve on schedule, each stage's teacher is the model as the
// stage began, the optimizer and EMAs restart, a resumed run equals a straight one bitwise,
// the model samples with its Euler steps, and bad flags get one line each.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/diffusion/consistency_losses.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace idiff::test {
namespace {

// Level i of n + 1 Karras levels from sigma_max to sigma_min (EDM's rho 7).
double level(const KarrasParams& p, double i, int64_t n) {
  const double hi = std::pow(p.sigma_max, 1 / p.rho), lo = std::pow(p.sigma_min, 1 / p.rho);
  return std::pow(hi + i / static_cast<double>(n) * (lo - hi), p.rho);
}

TEST(Progdist, TargetIsTheXZeroOfTheTeachersTwoEulerSteps) {
  KarrasParams p;
  p.weight_schedule = "karras";
  const KarrasDenoiser diffusion(p);
  const int64_t n = 4;
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x0 = at::rand({4, 1, 3, 3}, opts) * 2 - 1;
  const at::Tensor z = at::randn({4, 1, 3, 3}, opts);
  const at::Tensor indices = at::arange(n, at::kLong);
  const ModelFn student = [](const at::Tensor& x, const at::Tensor& t) {
    return 0.3 * x + 0.01 * t.view({-1, 1, 1, 1});
  };
  // A teacher that depends on x and sigma, nonlinearly.
  const DenoiseFn teacher = [](const at::Tensor& x, const at::Tensor& s) {
    return at::tanh(x) / (1 + s.view({-1, 1, 1, 1}));
  };
  const ConsistencyTerms r = progdist_losses(diffusion, student, teacher, x0, n, indices, z, "l2");
  for (int64_t i = 0; i < n; ++i) {
    const double t = level(p, i, n), th = level(p, i + 0.5, n), t3 = level(p, i + 1, n);
    EXPECT_NEAR(r.t[i].item<double>(), t, 1e-9 * t);
    EXPECT_NEAR(r.t2[i].item<double>(), t3, 1e-9 * t3);
    const at::Tensor xt = x0[i] + t * z[i];
    const auto d = [](const at::Tensor& x, double s) { return at::tanh(x) / (1 + s); };
    const at::Tensor xh = xt + (xt - d(xt, t)) / t * (th - t);
    const at::Tensor x3 = xh + (xh - d(xh, th)) / th * (t3 - th);
    const at::Tensor target = xt - t * (x3 - xt) / (t3 - t);
    EXPECT_TRUE(at::allclose(r.target[i], target, 1e-9, 1e-9)) << i;
    EXPECT_TRUE(at::allclose(r.x_t2[i], x3, 1e-9, 1e-9)) << i;
  }
  EXPECT_NEAR(r.t2[n - 1].item<double>(), p.sigma_min, 1e-12);  // the last level is sigma_min
  const at::Tensor distiller = diffusion.denoise(student, r.x_t, r.t).denoised;
  const at::Tensor want = (distiller - r.target).pow(2).mean({1, 2, 3}) * diffusion.weightings(r.t);
  EXPECT_TRUE(at::allclose(r.loss, want, 1e-12, 1e-12));
  // The target depends on the image (not only on the noise).
  const ConsistencyTerms other =
      progdist_losses(diffusion, student, teacher, x0 * 0.5, n, indices, z, "l2");
  EXPECT_FALSE(at::allclose(other.target, r.target, 1e-3, 1e-3));

  // A teacher whose denoiser is a constant c: the ODE's solution x = c + k sigma is a line
  // that Euler steps follow exactly, so the target is c at every level.
  const at::Tensor c = at::full({4, 1, 3, 3}, 0.25, opts);
  const DenoiseFn constant = [&c](const at::Tensor&, const at::Tensor&) { return c; };
  const ConsistencyTerms line =
      progdist_losses(diffusion, student, constant, x0, n, indices, z, "l1");
  EXPECT_TRUE(at::allclose(line.target, c, 1e-9, 1e-9));
}

TEST(Progdist, HalvesItsStepsResumesBitwiseAndSamples) {
  TempDir data, teacher_dir, straight, first, second, third, samples;
  write_shape_folder(data.path(), 8);
  auto r = run_idiff(
      cat_args(std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--batch_size", "4",
                                        "--max_steps", "2", "--log_dir", teacher_dir.path()},
               small_karras_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string teacher = teacher_dir.file("model000002.pt");
  // N = 4 for steps 0-1, 2 for steps 2-5, 1 from step 6 (create_ema_and_scales_fn).
  const auto common = cat_args(std::vector<std::string>{"cm-train",  "--training_mode",
                                                        "progdist",  "--scale_mode",
                                                        "progdist",  "--start_scales",
                                                        "4",         "--distill_steps_per_iter",
                                                        "2",         "--total_training_steps",
                                                        "7",         "--data_dir",
                                                        data.path(), "--teacher_model_path",
                                                        teacher,     "--batch_size",
                                                        "4",         "--seed",
                                                        "3",         "--ema_rate",
                                                        "0.9",       "--lr",
                                                        "1e-3"},
                               small_karras_flags());
  r = run_idiff(cat_args(
      common, std::vector<std::string>{"--log_dir", straight.path(), "--save_interval", "1"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("objective: progdist"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 0: 4 steps learned from a teacher's 8 (the loaded teacher)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("step 2: 2 steps learned from a teacher's 4 (the model as the stage"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("step 6: 1 step learned from a teacher's 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("training finished at step 7"), std::string::npos) << r.out;
  // The first stage's teacher is the loaded file: no copy beside its checkpoints.
  EXPECT_FALSE(std::filesystem::exists(straight.file("teacher_model000001.pt")));
  // A stage begins with the model as its teacher and the EMA restarted from the model.
  for (const std::string step : {"000002", "000006"}) {
    const std::string model = straight.file("model" + step + ".pt");
    EXPECT_TRUE(same_file_tensors(model, straight.file("teacher_model" + step + ".pt"))) << step;
    EXPECT_TRUE(same_file_tensors(model, straight.file("ema_0.9_" + step + ".pt"))) << step;
  }
  EXPECT_TRUE(same_file_tensors(straight.file("teacher_model000002.pt"),
                                straight.file("teacher_model000005.pt")));
  EXPECT_FALSE(
      same_file_tensors(straight.file("model000005.pt"), straight.file("ema_0.9_000005.pt")));
  EXPECT_FALSE(same_file_tensors(straight.file("model000007.pt"), teacher));

  r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", first.path(), "--max_steps", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto resume =
      cat_args(common, std::vector<std::string>{"--log_dir", second.path(), "--resume_checkpoint",
                                                first.file("model000004.pt")});
  r = run_idiff(resume);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loading the stage's teacher from checkpoint"), std::string::npos) << r.out;
  for (const std::string name : {"model000007.pt", "ema_0.9_000007.pt", "teacher_model000007.pt"}) {
    EXPECT_TRUE(same_file_tensors(straight.file(name), second.file(name))) << name;
  }
  // Resumed where a stage begins (its optimizer state and EMAs fresh, its teacher the model).
  r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", third.path(), "--resume_checkpoint",
                                                straight.file("model000006.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const std::string name : {"model000007.pt", "ema_0.9_000007.pt"}) {
    EXPECT_TRUE(same_file_tensors(straight.file(name), third.file(name))) << name;
  }
  // Without the stage's teacher a resume cannot repeat the run: one line naming the file.
  std::filesystem::remove(first.file("teacher_model000004.pt"));
  r = run_idiff(resume);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("teacher_model000004.pt: missing; resuming progressive distillation"),
            std::string::npos)
      << r.err;

  // The model samples with its Euler steps (flags.json says progdist).
  r = run_idiff({"sample", straight.file("ema_0.9_000007.pt"), "--steps", "1", "--num_samples", "2",
                 "--log_dir", samples.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("progdist, 1 steps (1 model calls)"), std::string::npos) << r.out;
  EXPECT_TRUE(std::ifstream(samples.file("samples_2x16x16x3.npz")).good());

  const auto base = cat_args(
      std::vector<std::string>{"cm-train", "--data_dir", data.path(), "--log_dir",
                               samples.file("bad"), "--batch_size", "2", "--max_steps", "1"},
      small_karras_flags());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--training_mode", "progdist", "--scale_mode", "progdist"},
       "progdist needs --teacher_model_path"},
      {{"--training_mode", "progdist", "--teacher_model_path", teacher},
       "halves its steps by --scale_mode progdist"},
      {{"--teacher_model_path", teacher, "--scale_mode", "progdist"},
       "is progressive distillation's schedule"},
  };
  for (const auto& [extra, want] : cases) {
    r = run_idiff(cat_args(base, extra));
    EXPECT_EQ(r.exit_code, 2) << join(extra, " ") << "\n" << r.err;
    EXPECT_NE(r.err.find(want), std::string::npos) << join(extra, " ") << "\n" << r.err;
  }
}

}  // namespace
}  // namespace idiff::test
