// GaussianDiffusion with small fake models: the maths checked against closed forms (Bayes'
// posterior, the prior KL, likelihood normalisation), every mean/variance/loss type, the
// hybrid loss's gradient routing, the sampling loops (seeded, progressive, DDIM inversion),
// calc_bpd_loop, and the errors for bad timesteps and mismatched models.
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/losses.h"
#include "idiff/diffusion/respace.h"
#include "idiff/diffusion/sampling/sample_loop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace idiff {
namespace {

constexpr int64_t kT = 100;

DiffusionParams params(ModelMeanType mean, ModelVarType var, LossType loss = LossType::MSE,
                       const std::string& schedule = "linear", int64_t steps = kT) {
  DiffusionParams p;
  p.betas = get_named_beta_schedule(schedule, steps);
  p.model_mean_type = mean;
  p.model_var_type = var;
  p.loss_type = loss;
  p.rescale_timesteps = true;
  return p;
}

at::Generator generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// x_0 in [-1, 1], [2, 3, 4, 4] (float64 unless asked otherwise).
at::Tensor x_start(at::ScalarType dtype = at::kDouble) {
  return (at::rand({2, 3, 4, 4}, generator(1), at::TensorOptions().dtype(dtype)) * 2 - 1);
}

at::Tensor steps(std::initializer_list<int64_t> t) {
  return at::tensor(t, at::kLong);
}

// A model whose output depends on x and t, with 2C channels when `learned`.
ModelFn smooth_model(bool learned) {
  return [learned](const at::Tensor& x, const at::Tensor& t) {
    const at::Tensor tt = (t.to(x.scalar_type()) / 1000.0).view({-1, 1, 1, 1});
    const at::Tensor mean = 0.3 * at::sin(x) + 0.1 * tt;
    return learned ? at::cat({mean, at::tanh(x - tt)}, 1) : mean;
  };
}

// Scalar value at timestep i of a schedule array.
double at_t(const std::vector<double>& v, int64_t i) {
  return v[static_cast<size_t>(i)];
}

TEST(GaussianDiffusion, PosteriorIsBayes) {
  // q(x_{t-1} | x_t, x_0) from q(x_t | x_{t-1}) q(x_{t-1} | x_0) directly: precision
  // alpha_t / beta_t + 1 / (1 - alpha_bar_{t-1}) (Ho et al. eqs. 6-7).
  const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedSmall));
  const auto& s = d.schedule();
  const at::Tensor x0 = x_start();
  const at::Tensor xt = at::randn_like(x0);
  for (int64_t t : {int64_t{1}, int64_t{37}, kT - 1}) {
    const double beta = at_t(s.betas, t), alpha = 1 - beta, abp = at_t(s.alphas_cumprod_prev, t);
    const double var = 1.0 / (alpha / beta + 1.0 / (1.0 - abp));
    const at::Tensor mean = var * (std::sqrt(alpha) / beta * xt + std::sqrt(abp) / (1 - abp) * x0);
    const MeanVariance post = d.q_posterior_mean_variance(x0, xt, steps({t, t}));
    EXPECT_CLOSE(post.mean, mean, 1e-12) << t;
    EXPECT_NEAR(post.variance[0][0][0][0].item<double>(), var, 1e-15) << t;
    EXPECT_NEAR(post.log_variance[1][2][3][3].item<double>(), std::log(var), 1e-12) << t;
  }
  // t = 0: zero variance, its log clipped to the t = 1 value.
  const MeanVariance p0 = d.q_posterior_mean_variance(x0, xt, steps({0, 0}));
  EXPECT_EQ(p0.variance.abs().max().item<double>(), 0.0);
  EXPECT_NEAR(p0.log_variance[0][0][0][0].item<double>(), std::log(at_t(s.posterior_variance, 1)),
              1e-12);
  EXPECT_CLOSE(p0.mean, x0, 1e-12);
}

TEST(GaussianDiffusion, ForwardProcessMoments) {
  const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedLarge));
  const at::Tensor x0 = x_start();
  const at::Tensor t = steps({3, 80});
  const MeanVariance q = d.q_mean_variance(x0, t);
  const at::Tensor noise = at::randn_like(x0);
  const at::Tensor xt = d.q_sample(x0, t, noise);
  // x_t = mean + sqrt(var) * eps (Ho et al. eq. 4).
  EXPECT_CLOSE(xt, q.mean + at::sqrt(q.variance) * noise, 1e-12);
  EXPECT_NEAR(q.variance[1][0][0][0].item<double>(), 1 - d.schedule().alphas_cumprod[80], 1e-15);
  EXPECT_CLOSE(q.log_variance, at::log(q.variance), 1e-12);
  // float32 inputs get float32 coefficients, like the reference.
  EXPECT_EQ(d.q_sample(x0.to(at::kFloat), t, noise.to(at::kFloat)).scalar_type(), at::kFloat);
  // A seeded generator draws the noise reproducibly.
  EXPECT_TRUE(at::equal(d.q_sample(x0, t, {}, generator(5)), d.q_sample(x0, t, {}, generator(5))));
}

TEST(GaussianDiffusion, EveryMeanTypeRecoversXStart) {
  const at::Tensor x0 = x_start();
  const at::Tensor t = steps({1, 60});
  const at::Tensor xt = at::randn_like(x0);
  for (auto mean : {ModelMeanType::StartX, ModelMeanType::PreviousX, ModelMeanType::Epsilon}) {
    SCOPED_TRACE(enum_name(mean));
    const GaussianDiffusion d(params(mean, ModelVarType::FixedSmall));
    const at::Tensor posterior_mean = d.q_posterior_mean_variance(x0, xt, t).mean;
    // A perfect model of each kind: x_0, mu~_t(x_0, x_t), or the epsilon behind x_t.
    const at::Tensor eps =
        (xt - d.q_mean_variance(x0, t).mean) / at::sqrt(d.q_mean_variance(x0, t).variance);
    ModelFn perfect = [&](const at::Tensor&, const at::Tensor&) {
      return mean == ModelMeanType::StartX      ? x0
             : mean == ModelMeanType::PreviousX ? posterior_mean
                                                : eps;
    };
    const PMeanVariance out = d.p_mean_variance(perfect, xt, t, /*clip_denoised=*/false);
    EXPECT_CLOSE(out.pred_xstart, x0, 1e-9);
    EXPECT_CLOSE(out.mean, posterior_mean, 1e-9);
  }
}

TEST(GaussianDiffusion, EveryVarianceType) {
  const at::Tensor x0 = x_start();
  const at::Tensor t = steps({0, 42});
  const DiffusionSchedule s(get_named_beta_schedule("linear", kT));
  auto log_var_at = [](const PMeanVariance& o, int64_t i) {
    return o.log_variance[i][1][2][3].item<double>();
  };
  {
    const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedSmall));
    const PMeanVariance o = d.p_mean_variance(smooth_model(false), x0, t);
    EXPECT_NEAR(log_var_at(o, 0), s.posterior_log_variance_clipped[0], 1e-12);
    EXPECT_NEAR(log_var_at(o, 1), std::log(s.posterior_variance[42]), 1e-12);
  }
  {
    // FIXED_LARGE: beta_t, but beta~_1 at t = 0 (the reference's decoder trick).
    const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedLarge));
    const PMeanVariance o = d.p_mean_variance(smooth_model(false), x0, t);
    EXPECT_NEAR(log_var_at(o, 0), std::log(s.posterior_variance[1]), 1e-12);
    EXPECT_NEAR(log_var_at(o, 1), std::log(s.betas[42]), 1e-12);
    EXPECT_CLOSE(o.variance, at::exp(o.log_variance), 1e-12);
  }
  {
    const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::Learned));
    const at::Tensor out = smooth_model(true)(x0, d.model_timesteps(t));
    const PMeanVariance o = d.p_mean_variance(smooth_model(true), x0, t);
    EXPECT_CLOSE(o.log_variance, out.slice(1, 3), 1e-15);
  }
  {
    // LEARNED_RANGE: v = -1 gives beta~_t, v = +1 gives beta_t (Nichol & Dhariwal eq. 15).
    const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::LearnedRange));
    for (double v : {-1.0, 1.0}) {
      ModelFn model = [v](const at::Tensor& x, const at::Tensor&) {
        return at::cat({at::zeros_like(x), at::full_like(x, v)}, 1);
      };
      const PMeanVariance o = d.p_mean_variance(model, x0, t);
      const double expected = v < 0 ? s.posterior_log_variance_clipped[42] : std::log(s.betas[42]);
      EXPECT_NEAR(log_var_at(o, 1), expected, 1e-12) << v;
    }
  }
}

TEST(GaussianDiffusion, DenoisedFnRunsBeforeClipping) {
  const GaussianDiffusion d(params(ModelMeanType::StartX, ModelVarType::FixedLarge));
  const at::Tensor x0 = x_start() * 0.5;
  ModelFn model = [&](const at::Tensor&, const at::Tensor&) { return x0; };
  int calls = 0;
  DenoisedFn times_ten = [&](const at::Tensor& x) {
    ++calls;
    return x * 10;
  };
  const at::Tensor t = steps({5, 6});
  EXPECT_CLOSE(d.p_mean_variance(model, x0, t, false, times_ten).pred_xstart, x0 * 10, 1e-15);
  EXPECT_CLOSE(d.p_mean_variance(model, x0, t, true, times_ten).pred_xstart, (x0 * 10).clamp(-1, 1),
               1e-15);
  EXPECT_EQ(calls, 2);
}

TEST(GaussianDiffusion, HybridLossVbSendsNoGradientToTheMean) {
  const GaussianDiffusion d(
      params(ModelMeanType::Epsilon, ModelVarType::LearnedRange, LossType::RescaledMSE));
  const at::Tensor a = at::full({}, 0.3, at::kDouble).requires_grad_();  // drives the mean
  const at::Tensor b = at::full({}, 0.2, at::kDouble).requires_grad_();  // drives the variance
  ModelFn model = [&](const at::Tensor& x, const at::Tensor&) {
    return at::cat({a * x, b * at::ones_like(x)}, 1);
  };
  const at::Tensor x0 = x_start();
  const at::Tensor t = steps({0, 50});
  const at::Tensor noise = at::randn(x0.sizes(), generator(2), x0.options());

  LossTerms terms = d.training_losses(model, x0, t, noise);
  EXPECT_CLOSE(terms.at("loss"), terms.at("mse") + terms.at("vb"), 1e-15);
  terms.at("vb").sum().backward();
  EXPECT_TRUE(!a.grad().defined() || a.grad().abs().item<double>() == 0.0);
  ASSERT_TRUE(b.grad().defined());
  EXPECT_GT(b.grad().abs().item<double>(), 0.0);

  // The MSE term trains only the mean.
  b.mutable_grad() = at::Tensor();
  terms = d.training_losses(model, x0, t, noise);
  terms.at("mse").sum().backward();
  ASSERT_TRUE(a.grad().defined());
  EXPECT_GT(a.grad().abs().item<double>(), 0.0);
  EXPECT_TRUE(!b.grad().defined() || b.grad().abs().item<double>() == 0.0);

  // Control: the same VLB term through the undetached output does reach the mean.
  a.mutable_grad() = at::Tensor();
  d.vb_terms_bpd(model, x0, d.q_sample(x0, t, noise), t, false).output.sum().backward();
  ASSERT_TRUE(a.grad().defined());
  EXPECT_GT(a.grad().abs().item<double>(), 0.0);
}

TEST(GaussianDiffusion, EveryLossType) {
  const c10::NoGradGuard no_grad;
  const at::Tensor x0 = x_start();
  const at::Tensor t = steps({0, 77});
  const at::Tensor noise = at::randn(x0.sizes(), generator(3), x0.options());
  const ModelFn learned = smooth_model(true);

  const GaussianDiffusion kl(
      params(ModelMeanType::Epsilon, ModelVarType::LearnedRange, LossType::KL));
  const at::Tensor xt = kl.q_sample(x0, t, noise);
  const at::Tensor vb = kl.vb_terms_bpd(learned, x0, xt, t, /*clip_denoised=*/false).output;
  LossTerms terms = kl.training_losses(learned, x0, t, noise);
  EXPECT_EQ(terms.size(), 1u);
  EXPECT_CLOSE(terms.at("loss"), vb, 1e-15);
  const GaussianDiffusion rkl(
      params(ModelMeanType::Epsilon, ModelVarType::LearnedRange, LossType::RescaledKL));
  EXPECT_CLOSE(rkl.training_losses(learned, x0, t, noise).at("loss"), vb * kT, 1e-15);

  // Hybrid: the VLB term of the frozen mean equals the KL loss here (the model is not
  // trained), scaled by T/1000 for RESCALED_MSE.
  const GaussianDiffusion mse(
      params(ModelMeanType::Epsilon, ModelVarType::LearnedRange, LossType::MSE));
  const GaussianDiffusion rmse(
      params(ModelMeanType::Epsilon, ModelVarType::LearnedRange, LossType::RescaledMSE));
  EXPECT_CLOSE(mse.training_losses(learned, x0, t, noise).at("vb"), vb, 1e-15);
  terms = rmse.training_losses(learned, x0, t, noise);
  EXPECT_CLOSE(terms.at("vb"), vb * (kT / 1000.0), 1e-15);
  const at::Tensor eps_out = learned(xt, rmse.model_timesteps(t)).slice(1, 0, 3);
  EXPECT_CLOSE(terms.at("mse"), mean_flat((noise - eps_out).pow(2)), 1e-15);

  // Fixed variance: only "loss" and "mse"; the target follows the mean type.
  const ModelFn fixed = smooth_model(false);
  for (auto mean : {ModelMeanType::Epsilon, ModelMeanType::StartX, ModelMeanType::PreviousX}) {
    SCOPED_TRACE(enum_name(mean));
    const GaussianDiffusion d(params(mean, ModelVarType::FixedLarge, LossType::RescaledMSE));
    const at::Tensor target = mean == ModelMeanType::Epsilon ? noise
                              : mean == ModelMeanType::StartX
                                  ? x0
                                  : d.q_posterior_mean_variance(x0, xt, t).mean;
    terms = d.training_losses(fixed, x0, t, noise);
    EXPECT_EQ(terms.size(), 2u);
    EXPECT_CLOSE(terms.at("mse"), mean_flat((target - fixed(xt, d.model_timesteps(t))).pow(2)),
                 1e-15);
    EXPECT_TRUE(at::equal(terms.at("loss"), terms.at("mse")));
  }
}

TEST(DiffusionLosses, ClosedForms) {
  // KL(N(m, 1) || N(0, 1)) = m^2 / 2; KL(N(0, s1^2) || N(0, s2^2)) = log(s2/s1) + s1^2/(2 s2^2) -
  // 1/2.
  const at::Tensor m = at::tensor({0.0, 0.5, -2.0}, at::kDouble);
  const at::Tensor zero = at::zeros({}, at::kDouble);
  EXPECT_CLOSE(normal_kl(m, zero, zero, zero), m.pow(2) / 2, 1e-15);
  const double lv1 = std::log(0.25), lv2 = std::log(4.0);
  EXPECT_NEAR(normal_kl(zero, at::full({}, lv1, at::kDouble), zero, at::full({}, lv2, at::kDouble))
                  .item<double>(),
              std::log(4.0) + 0.25 / 8.0 - 0.5, 1e-15);
  // The approximate CDF is within 1e-3 of the exact one.
  const at::Tensor x = at::linspace(-4, 4, 81, at::kDouble);
  EXPECT_LT((approx_standard_normal_cdf(x) - 0.5 * at::erfc(-x / std::sqrt(2.0)))
                .abs()
                .max()
                .item<double>(),
            1e-3);
  // The discretised likelihood is a distribution over the 256 pixel values.
  const at::Tensor bins = at::linspace(-1, 1, 256, at::kDouble);
  for (double mean : {-0.9, 0.0, 0.3}) {
    for (double log_scale : {-5.0, -2.0, 0.0}) {
      const at::Tensor lp = discretized_gaussian_log_likelihood(bins, at::full_like(bins, mean),
                                                                at::full_like(bins, log_scale));
      EXPECT_NEAR(at::exp(lp).sum().item<double>(), 1.0, 1e-9) << mean << " " << log_scale;
    }
  }
}

TEST(GaussianDiffusion, PriorBpdIsTheClosedFormKl) {
  const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedLarge));
  const at::Tensor x0 = x_start();
  const double ab = d.schedule().alphas_cumprod.back();
  // KL(N(sqrt(ab) x, 1 - ab) || N(0, 1)) = (-1 - log(1 - ab) + (1 - ab) + ab x^2) / 2, in bits.
  const at::Tensor kl = 0.5 * (-1 - std::log(1 - ab) + (1 - ab) + ab * x0.pow(2));
  EXPECT_CLOSE(d.prior_bpd(x0), mean_flat(kl) / std::log(2.0), 1e-6);
}

TEST(GaussianDiffusion, CalcBpdLoopSumsTheTermsOfEachStep) {
  const SpacedDiffusion d(space_timesteps(kT, "5"),
                          params(ModelMeanType::Epsilon, ModelVarType::LearnedRange));
  const ModelFn model = smooth_model(true);
  const at::Tensor x0 = x_start();
  const BpdResult r = d.calc_bpd_loop(model, x0, /*clip_denoised=*/true, generator(11));
  ASSERT_EQ(r.vb.sizes(), (at::IntArrayRef{2, 5}));
  EXPECT_CLOSE(r.total_bpd, r.vb.sum(1) + r.prior_bpd, 1e-15);
  EXPECT_CLOSE(r.prior_bpd, d.prior_bpd(x0), 1e-15);
  // Replay the loop's draws: column j is timestep T-1-j.
  at::Generator gen = generator(11);
  for (int64_t j = 0; j < 5; ++j) {
    const at::Tensor t = steps({4 - j, 4 - j});
    const at::Tensor noise = draw_normal(x0.sizes(), x0.options(), gen);
    const at::Tensor xt = d.q_sample(x0, t, noise);
    const VbTerms vb = d.vb_terms_bpd(model, x0, xt, t, true);
    EXPECT_CLOSE(r.vb.select(1, j), vb.output, 1e-12) << j;
    EXPECT_CLOSE(r.xstart_mse.select(1, j), mean_flat((vb.pred_xstart - x0).pow(2)), 1e-12);
    const at::Tensor eps = d.predict_eps_from_xstart(xt, t, vb.pred_xstart);
    EXPECT_CLOSE(r.mse.select(1, j), mean_flat((eps - noise).pow(2)), 1e-12);
  }
}

TEST(Sampling, AncestralLoopIsSeededAndProgressive) {
  const SpacedDiffusion d(space_timesteps(kT, "8"),
                          params(ModelMeanType::Epsilon, ModelVarType::LearnedRange));
  const ModelFn model = smooth_model(true);
  const std::vector<int64_t> shape = {2, 3, 4, 4};
  SampleOptions opts;
  opts.generator = generator(21);
  std::vector<double> seen;
  const at::Tensor sample = p_sample_loop(d, model, shape, opts, [&](const SampleStep& s) {
    EXPECT_EQ(s.index, static_cast<int64_t>(seen.size()));
    EXPECT_EQ(s.num_steps, 8);
    seen.push_back(s.t);
  });
  // The original process's steps behind the respaced ones, last first.
  const std::vector<int64_t>& map = d.timestep_map();
  EXPECT_EQ(seen, std::vector<double>(map.rbegin(), map.rend()));
  EXPECT_EQ(sample.sizes(), at::IntArrayRef(shape));
  EXPECT_LE(sample.abs().max().item<float>(), 1.0f);  // x_0 = the clipped x_0 prediction

  // The same generator walks the same stream: x_T, then one draw per step.
  opts.generator = generator(21);
  EXPECT_TRUE(at::equal(p_sample_loop(d, model, shape, opts), sample));
  at::Generator gen = generator(21);
  at::Tensor x = draw_normal(shape, at::TensorOptions().dtype(at::kFloat), gen);
  for (int64_t i = 7; i >= 0; --i) x = d.p_sample(model, x, steps({i, i}), true, {}, gen).sample;
  EXPECT_TRUE(at::equal(x, sample));
  opts.generator = generator(22);
  EXPECT_FALSE(at::equal(p_sample_loop(d, model, shape, opts), sample));

  // No noise at t = 0: the sample is the mean.
  const at::Tensor xt = x_start(at::kFloat);
  const at::Tensor t0 = steps({0, 0});
  EXPECT_TRUE(at::equal(d.p_sample(model, xt, t0).sample, d.p_mean_variance(model, xt, t0).mean));
}

TEST(Sampling, DdimIsDeterministicAtEtaZeroAndInvertible) {
  const SpacedDiffusion d(space_timesteps(kT, "ddim10"),
                          params(ModelMeanType::Epsilon, ModelVarType::FixedLarge));
  const ModelFn model = smooth_model(false);
  const std::vector<int64_t> shape = {2, 3, 4, 4};
  SampleOptions opts;
  opts.noise = at::randn(shape, generator(4), at::TensorOptions().dtype(at::kDouble));
  opts.generator = generator(1);
  const at::Tensor a = ddim_sample_loop(d, model, shape, opts, 0.0);
  opts.generator = generator(2);
  EXPECT_TRUE(at::equal(ddim_sample_loop(d, model, shape, opts, 0.0), a));
  const at::Tensor b = ddim_sample_loop(d, model, shape, opts, 1.0);
  opts.generator = generator(3);
  EXPECT_FALSE(at::equal(ddim_sample_loop(d, model, shape, opts, 1.0), b));

  // With an x-independent epsilon, the reverse ODE step is undone by the forward one.
  const at::Tensor eps = at::randn(shape, generator(6), at::TensorOptions().dtype(at::kDouble));
  ModelFn constant = [&](const at::Tensor&, const at::Tensor&) { return eps; };
  const at::Tensor x = x_start();
  const SampleOutput up = d.ddim_reverse_sample(constant, x, steps({3, 3}), false);
  const SampleOutput down = d.ddim_sample(constant, up.sample, steps({4, 4}), false);
  EXPECT_CLOSE(down.sample, x, 1e-10);
}

TEST(Sampling, RunsOnEveryAvailableDeviceLikeOnTheCpu) {
  std::vector<c10::Device> devices = {c10::Device(c10::kCPU)};
  if (at::hasCUDA()) devices.emplace_back(c10::kCUDA, 0);
  const SpacedDiffusion d(space_timesteps(kT, "6"),
                          params(ModelMeanType::Epsilon, ModelVarType::LearnedRange));
  const std::vector<int64_t> shape = {2, 3, 4, 4};
  at::Tensor reference;
  for (const auto& device : devices) {
    SCOPED_TRACE(device.str());
    SampleOptions opts;
    opts.device = device;
    opts.generator = generator(8);  // a CPU generator: the same noise on every device
    const at::Tensor s = p_sample_loop(d, smooth_model(true), shape, opts);
    EXPECT_EQ(s.device(), device);
    const at::Tensor x0 = x_start(at::kFloat).to(device);
    const at::Tensor t = steps({0, 5}).to(device);
    const LossTerms l = d.training_losses(smooth_model(true), x0, t, {}, generator(9));
    const at::Tensor row = at::cat({s.flatten().cpu(), l.at("loss").cpu(), l.at("vb").cpu()});
    if (!reference.defined()) reference = row;
    EXPECT_CLOSE(row, reference, 1e-5);
  }
}

TEST(GaussianDiffusion, BadTimestepsAndMismatchedModelsAreClearErrors) {
  const GaussianDiffusion d(params(ModelMeanType::Epsilon, ModelVarType::FixedLarge));
  const at::Tensor x0 = x_start();
  const ModelFn model = smooth_model(false);
  auto expect_error = [&](auto&& f, const std::string& text) {
    const std::string msg = test::error_of(f);
    EXPECT_NE(msg.find(text), std::string::npos) << "'" << msg << "' lacks '" << text << "'";
  };
  expect_error(
      [&] {
        d.q_sample(x0, steps({-1, 3}));
      },
      "timesteps must be in [0, 100), got values from -1 to 3");
  expect_error([&] { d.p_mean_variance(model, x0, steps({0, 100})); }, "from 0 to 100");
  expect_error([&] { d.training_losses(model, x0, steps({0, 1000})); }, "must be in [0, 100)");
  expect_error([&] { d.p_sample(model, x0, steps({1, 2, 3})); }, "must be [2] (one per sample)");
  expect_error([&] { d.q_sample(x0, at::tensor({1.0, 2.0})); }, "must be integers");
  expect_error(
      [&] {
        d.training_losses(model, x0, steps({1, 2}), at::zeros({2, 3}));
      },
      "noise [2, 3] differs in shape");
  // A learned-variance model on a fixed-variance diffusion and the other way round.
  expect_error(
      [&] {
        d.p_mean_variance(smooth_model(true), x0, steps({1, 2}));
      },
      "`learn_sigma` False");
  const GaussianDiffusion learned(params(ModelMeanType::Epsilon, ModelVarType::LearnedRange));
  expect_error([&] { learned.training_losses(model, x0, steps({1, 2})); }, "`learn_sigma` True");
  expect_error([&] { learned.p_mean_variance(model, x0, steps({1, 2})); }, "`learn_sigma` True");
  SampleOptions opts;
  opts.noise = at::zeros({1, 3, 4, 4});
  expect_error(
      [&] {
        p_sample_loop(d, model, {2, 3, 4, 4}, opts);
      },
      "starting noise is [1, 3, 4, 4]");
  expect_error([&] { ddim_sample_loop(d, model, {2, 3, 4, 4}, {}, -0.5); }, "eta must be >= 0");
  expect_error(
      [&] {
        GaussianDiffusion bad(DiffusionParams{{0.1, 1.5}});
      },
      "betas must be in (0, 1]");
  expect_error([&] { GaussianDiffusion bad(DiffusionParams{{0.1}}); }, "at least 2 steps");
}

}  // namespace
}  // namespace idiff
