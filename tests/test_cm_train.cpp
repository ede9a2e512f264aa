// `idiff cm-train` (consistency_models' scripts/cm_train.py): consistency distillation from an
// EDM teacher and consistency training, through the one TrainLoop. The run resumes bitwise,
// the target network is the EMA of the model at the schedule's rate and is saved beside it,
// the student samples in one call, the loss of consistency training falls, and bad flags
// get one line each.
#include "test_train_util.h"
#include "test_util.h"

#include "idiff/diffusion/consistency_losses.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace idiff::test {
namespace {

// A small EDM teacher trained for two steps (its flags.json beside it).
std::string train_teacher(const TempDir& data, const TempDir& dir) {
  const auto r = run_idiff(
      cat_args(std::vector<std::string>{"edm-train", "--data_dir", data.path(), "--batch_size", "4",
                                        "--max_steps", "2", "--log_dir", dir.path()},
               small_karras_flags()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return dir.file("model000002.pt");
}

TEST(CmTrain, DistillsResumesBitwiseAndSamplesInOneCall) {
  TempDir data, teacher_dir, straight, first, second, samples;
  write_shape_folder(data.path(), 8);
  const std::string teacher = train_teacher(data, teacher_dir);
  const auto common = cat_args(std::vector<std::string>{"cm-train",  "--data_dir",
                                                        data.path(), "--teacher_model_path",
                                                        teacher,     "--batch_size",
                                                        "4",         "--save_interval",
                                                        "2",         "--seed",
                                                        "5",         "--ema_rate",
                                                        "0.9",       "--lr",
                                                        "1e-3",      "--start_scales",
                                                        "10",        "--teacher_dropout",
                                                        "0.2",       "--dropout",
                                                        "0.1"},
                               small_karras_flags());
  auto r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", straight.path(), "--max_steps", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("objective: consistency_distillation"), std::string::npos) << r.out;
  r = run_idiff(
      cat_args(common, std::vector<std::string>{"--log_dir", first.path(), "--max_steps", "2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_idiff(cat_args(
      common, std::vector<std::string>{"--log_dir", second.path(), "--max_steps", "4",
                                       "--resume_checkpoint", first.file("model000002.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loading target model from checkpoint"), std::string::npos) << r.out;
  for (const std::string name : {"model000004.pt", "ema_0.9_000004.pt", "target_model000004.pt"}) {
    EXPECT_TRUE(same_file_tensors(straight.file(name), second.file(name))) << name;
  }
  // --start_ema 0 (the default, fixed): the target network is the model after every step;
  // and the model moved away from the teacher it started from.
  EXPECT_TRUE(
      same_file_tensors(straight.file("model000004.pt"), straight.file("target_model000004.pt")));
  EXPECT_FALSE(same_file_tensors(straight.file("model000004.pt"), teacher));
  // The student alone, its flags from flags.json: one model call.
  r = run_idiff({"sample", straight.file("ema_0.9_000004.pt"), "--sampler", "onestep",
                 "--num_samples", "2", "--log_dir", samples.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--training_mode consistency_distillation"), std::string::npos) << r.out;
  EXPECT_TRUE(std::ifstream(samples.file("samples_2x16x16x3.npz")).good());

  // `idiff tune-steps` searches the student's ts against the teacher's fine solution (8 Heun
  // steps here), and `idiff sample --steps_file` samples at them.
  const std::string ts_file = samples.file("ts.json");
  const std::vector<std::string> tune = {"tune-steps",
                                         straight.file("ema_0.9_000004.pt"),
                                         "--teacher_model_path",
                                         teacher,
                                         "--steps",
                                         "10",
                                         "--model_calls",
                                         "3",
                                         "--num_samples",
                                         "4",
                                         "--reference_steps",
                                         "8",
                                         "--steps_file",
                                         ts_file,
                                         "--log_dir",
                                         samples.path()};
  r = run_idiff(tune);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 calls: --ts 0,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("held-out draws"), std::string::npos) << r.out;
  std::ifstream in(ts_file);
  const auto j = nlohmann::json::parse(in);
  const std::vector<int64_t> ts = j.at("ts").get<std::vector<int64_t>>();
  ASSERT_EQ(ts.size(), 4u);
  EXPECT_EQ(ts.front(), 0);
  EXPECT_EQ(ts.back(), 9);
  EXPECT_TRUE(std::is_sorted(ts.begin(), ts.end()));
  EXPECT_EQ(j.at("sampler"), "multistep");
  r = run_idiff({"sample", straight.file("ema_0.9_000004.pt"), "--steps_file", ts_file,
                 "--num_samples", "2", "--log_dir", samples.file("ts")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("multistep, 3 steps (3 model calls), the steps of"), std::string::npos)
      << r.out;
  r = run_idiff(cat_args(tune, std::vector<std::string>{"--sampler", "heun"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("searches a consistency model's --ts"), std::string::npos) << r.err;
  r = run_idiff(cat_args(tune, std::vector<std::string>{"--image_size", "32"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("makes 3-channel 16x16 images, the model 3-channel 32x32"),
            std::string::npos)
      << r.err;
}

// With --start_ema above 0 the target lags the model: an EMA, not a copy.
TEST(CmTrain, TrainingsTargetIsAnEmaAndItsLossFalls) {
  TempDir data, dir;
  write_shape_folder(data.path(), 8);
  const auto r = run_idiff(cat_args(
      std::vector<std::string>{"cm-train", "--training_mode", "consistency_training", "--data_dir",
                               data.path(), "--log_dir", dir.path(), "--batch_size", "8", "--lr",
                               "2e-3", "--max_steps", "30", "--log_interval", "5", "--start_ema",
                               "0.9", "--start_scales", "10", "--save_interval", "30",
                               // RAdam, the default, warms up over
                               // thousands of steps; 30 steps here
                               // check the objective.
                               "--optimizer", "adamw"},
      small_karras_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("objective: consistency_training"), std::string::npos) << r.out;
  EXPECT_FALSE(same_file_tensors(dir.file("model000030.pt"), dir.file("target_model000030.pt")));
  const auto losses = progress_column(dir.file("progress.csv"), "loss");
  ASSERT_GE(losses.size(), 6u);
  EXPECT_LT(losses.back(), 0.7 * losses.front())
      << "first " << losses.front() << " last " << losses.back();
}

// An improved-diffusion network as a denoiser of sigma levels: at each integer timestep t,
// sigma = sqrt((1 - a_t) / a_t), it is called at t (rescaled) on the VP state x sqrt(a_t)
// and returns the x_0 its epsilon implies; between them at fractional times.
TEST(CmTrain, VpTeacherDenoiserIsTheTeachersX0AtIntegerTimesteps) {
  DiffusionConfig dc;
  dc.diffusion_steps = 10;
  dc.noise_schedule = "cosine";
  const DiffusionSchedule sched(diffusion_params(dc).betas);
  const NoiseSchedule ns = noise_schedule_of(diffusion_params(dc));
  at::Tensor seen;
  const ModelFn net = [&seen](const at::Tensor& x, const at::Tensor& t) {
    seen = t;
    return 0.3 * x + 0.01 * t.reshape({-1, 1, 1, 1});
  };
  const DenoiseFn d = vp_denoiser(net, ns, false, false, /*clip=*/false);
  at::manual_seed(0);
  const at::Tensor x_start = at::rand({3, 2, 4, 4}) * 2 - 1, z = at::randn({3, 2, 4, 4});
  for (int64_t t : {0, 4, 9}) {
    const double a = sched.alphas_cumprod[t], sigma = std::sqrt((1 - a) / a);
    const at::Tensor x_ve = x_start + sigma * z;
    const at::Tensor got = d(x_ve, at::full({3}, sigma, at::kDouble));
    // rescale_timesteps (improved-diffusion's default): the model sees t * 1000 / T.
    EXPECT_NEAR(seen[0].item<double>(), t * 100.0, 1e-3) << t;
    const at::Tensor x_vp = x_ve * std::sqrt(a);
    const at::Tensor eps = 0.3 * x_vp + 0.01 * t * 100.0;
    EXPECT_TRUE(at::allclose(got, (x_vp - std::sqrt(1 - a) * eps) / std::sqrt(a), 1e-4, 1e-5)) << t;
  }
  // Between two steps: a time strictly between them, and x_0 still depends on the input.
  const double a4 = sched.alphas_cumprod[4], a5 = sched.alphas_cumprod[5];
  const double mid = 0.5 * (std::sqrt((1 - a4) / a4) + std::sqrt((1 - a5) / a5));
  const at::Tensor m1 = d(x_start + mid * z, at::full({3}, mid, at::kDouble));
  EXPECT_GT(seen[0].item<double>(), 400.0);
  EXPECT_LT(seen[0].item<double>(), 500.0);
  EXPECT_GT((m1 - d(x_start, at::full({3}, mid, at::kDouble))).abs().max().item<double>(), 1e-3);
}

// Heun steps on an improved-diffusion teacher, as distillation takes them, converge to the
// teacher's ODE solution with order 2. The teacher is the exact epsilon-predictor of
// Gaussian data N(0, s^2 I), at every (fractional) timestep of a cosine schedule; its ODE
// from x at sigma_0 has the closed form x sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_0^2).
TEST(CmTrain, HeunOnAnImprovedDiffusionTeacherIsSecondOrder) {
  DiffusionConfig dc;
  dc.noise_schedule = "cosine";
  dc.rescale_timesteps = false;  // the model sees t itself
  const NoiseSchedule ns = noise_schedule_of(diffusion_params(dc));
  const double s2 = 0.25;
  const ModelFn eps = [&ns, s2](const at::Tensor& x, const at::Tensor& t) {
    std::vector<double> scale;
    for (int64_t i = 0; i < t.size(0); ++i) {
      const NoiseLevel l = ns.level(t[i].item<double>());
      scale.push_back(l.sigma / (l.alpha * l.alpha * s2 + l.sigma * l.sigma));
    }
    return x * at::tensor(scale, x.options()).reshape({-1, 1, 1, 1});
  };
  const DenoiseFn d = vp_denoiser(eps, ns, false, false, /*clip=*/false);
  at::manual_seed(0);
  const double hi = 40.0, lo = 0.05;
  const at::Tensor x_hi = at::randn({2, 1, 4, 4}, at::kDouble) * std::sqrt(s2 + hi * hi);
  const at::Tensor exact = x_hi * std::sqrt(s2 + lo * lo) / std::sqrt(s2 + hi * hi);
  const auto heun = [&](int n) {
    at::Tensor x = x_hi;
    for (int i = 0; i < n; ++i) {
      const double a = hi * std::pow(lo / hi, double(i) / n),
                   b = hi * std::pow(lo / hi, double(i + 1) / n);
      const auto slope = [&](const at::Tensor& y, double sigma) {
        return (y - d(y, at::full({2}, sigma, at::kDouble))) / sigma;
      };
      const at::Tensor d1 = slope(x, a), x2 = x + d1 * (b - a);
      x = x + (d1 + slope(x2, b)) * (0.5 * (b - a));
    }
    return (x - exact).abs().max().item<double>();
  };
  const double e8 = heun(8), e16 = heun(16), e32 = heun(32);
  EXPECT_LT(e32 / exact.abs().max().item<double>(), 1e-2) << e8 << " " << e16 << " " << e32;
  EXPECT_NEAR(e16 / e32, 4.0, 1.0) << e8 << " " << e16 << " " << e32;
  EXPECT_NEAR(e8 / e16, 4.0, 1.5) << e8 << " " << e16 << " " << e32;
}

// Distilling an improved-diffusion checkpoint (epsilon prediction, learned sigmas, cosine
// schedule): its flags come from its flags.json, the student's sigma range is clipped to
// the teacher's, and the student samples in one call.
TEST(CmTrain, DistillsAnImprovedDiffusionTeacher) {
  TempDir data, teacher_dir, dir, samples;
  write_shape_folder(data.path(), 4);
  auto r = run_idiff(
      cat_args(std::vector<std::string>{"train", "--data_dir", data.path(), "--batch_size", "2",
                                        "--max_steps", "1", "--noise_schedule", "cosine",
                                        "--log_dir", teacher_dir.path()},
               small_karras_flags(), std::vector<std::string>{"--learn_sigma", "True"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_idiff(cat_args(
      std::vector<std::string>{"cm-train", "--data_dir", data.path(), "--teacher_model_path",
                               teacher_dir.file("model000001.pt"), "--batch_size", "2",
                               "--max_steps", "2", "--start_scales", "10", "--log_dir", dir.path()},
      small_karras_flags()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("improved-/guided-diffusion teacher"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("starts from fresh weights"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the teacher's flags, from "), std::string::npos) << r.out;
  std::ifstream flags(dir.file("flags.json"));
  const std::string text((std::istreambuf_iterator<char>(flags)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("\"sigma_min\": \"0.002\""), std::string::npos) << text;  // clipped
  r = run_idiff({"sample", dir.file("model000002.pt"), "--sampler", "onestep", "--num_samples", "2",
                 "--log_dir", samples.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Its ts searched against the improved-diffusion teacher's ODE from the student's sigma_max.
  r = run_idiff({"tune-steps", dir.file("model000002.pt"), "--teacher_model_path",
                 teacher_dir.file("model000001.pt"), "--steps", "10", "--num_samples", "2",
                 "--reference_steps", "8", "--steps_file", samples.file("ts.json"), "--log_dir",
                 samples.path()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(
      r.out.find("fine solution: the teacher's heun, 8 steps (15 model calls), karras from t="),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("2 calls: --ts 0,"), std::string::npos) << r.out;
}

// A classifier-free guided teacher (trained with a null label) distils at a fixed
// --guidance_scale: the student follows the guided ODE, so it differs from the one the
// unguided teacher makes from the same seed; teachers without a null label, unconditional
// students and consistency training are one-line errors.
TEST(CmTrain, DistillsAClassifierFreeGuidedTeacher) {
  TempDir data, guided_dir, plain_dir, a, b, bad;
  write_shape_folder(data.path(), 4);
  const auto teacher = [&](const std::string& dropout, const TempDir& dir) {
    const auto r = run_idiff(cat_args(
        std::vector<std::string>{"train", "--data_dir", data.path(), "--batch_size", "2",
                                 "--max_steps", "4", "--lr", "5e-3", "--class_cond", "True",
                                 "--class_dropout_prob", dropout, "--log_dir", dir.path()},
        small_karras_flags()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // Four steps at a high rate: the output layer starts at zero, so after one step the
    // teacher's conditional and unconditional outputs would differ by little.
    return dir.file("model000004.pt");
  };
  const std::string guided = teacher("0.3", guided_dir), plain = teacher("0", plain_dir);
  const auto distil = [&](const std::string& t, const std::string& out,
                          const std::vector<std::string>& extra) {
    return run_idiff(cat_args(
        std::vector<std::string>{"cm-train", "--data_dir", data.path(), "--teacher_model_path", t,
                                 "--batch_size", "2", "--max_steps", "1", "--start_scales", "10",
                                 "--class_cond", "True", "--log_interval", "1", "--log_dir", out},
        small_karras_flags(), extra));
  };
  RunResult r = distil(guided, a.path(), {"--guidance_scale", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("classifier-free guided at scale 3"), std::string::npos) << r.out;
  r = distil(guided, b.path(), {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The first loss: the same student and draws, the guided teacher's Heun step elsewhere.
  const auto la = progress_column(a.file("progress.csv"), "loss"),
             lb = progress_column(b.file("progress.csv"), "loss");
  ASSERT_FALSE(la.empty() || lb.empty());
  EXPECT_GT(std::abs(la[0] - lb[0]), 1e-4 * std::abs(lb[0])) << la[0] << " " << lb[0];
  r = distil(plain, bad.path(), {"--guidance_scale", "3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is not a class-conditional model trained with a null label"),
            std::string::npos)
      << r.err;
  r = distil(guided, bad.path(), {"--guidance_scale", "3", "--class_cond", "False"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("give --class_cond True"), std::string::npos) << r.err;
  r = distil(guided, bad.path(),
             {"--guidance_scale", "3", "--training_mode", "consistency_training"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--guidance_scale is for a teacher; consistency_training has none"),
            std::string::npos)
      << r.err;
}

TEST(CmTrain, BadFlagsGetOneLineEach) {
  TempDir data, teacher_dir, dir;
  write_shape_folder(data.path(), 4);
  const std::string teacher = train_teacher(data, teacher_dir);
  const auto base =
      cat_args(std::vector<std::string>{"cm-train", "--data_dir", data.path(), "--log_dir",
                                        dir.path(), "--batch_size", "2", "--max_steps", "1"},
               small_karras_flags());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--teacher_model_path", teacher, "--image_size", "32"}, "was trained with --image_size 16"},
      {{"--training_mode", "consistency_training", "--teacher_model_path", teacher},
       "--teacher_model_path is for --training_mode consistency_distillation"},
      {{"--training_mode", "consistency_training", "--teacher_dropout", "0.3"},
       "--teacher_dropout is for a teacher; consistency_training has none"},
      {{"--teacher_model_path", teacher, "--loss_norm", "lpips"}, "lpips needs the LPIPS network"},
      {{"--teacher_model_path", teacher, "--lpips_vgg16", "vgg16.pth"},
       "--lpips_vgg16 and --lpips_weights are for --loss_norm lpips, not l2"},
      {{}, "needs --teacher_model_path"},
      {{"--training_mode", "edm"}, "idiff edm-train"},
      {{"--training_mode", "consistency_training", "--target_ema_mode", "adaptive"},
       "is not a combination consistency_models has"},
  };
  for (const auto& [extra, want] : cases) {
    const RunResult r = run_idiff(cat_args(base, extra));
    EXPECT_EQ(r.exit_code, 2) << join(extra, " ") << "\n" << r.err;  // a ConfigError
    EXPECT_NE(r.err.find(want), std::string::npos) << join(extra, " ") << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace idiff::test
