// Timestep samplers (resample.py): uniform probabilities, the loss-second-moment sampler's
// warm-up, history and probabilities against hand-computed values, weights 1 / (T p_t), the
// unbiasedness they buy, and the factory's names and error.
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/resample.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace idiff {
namespace {

GaussianDiffusion diffusion_of(int64_t steps) {
  return GaussianDiffusion(DiffusionParams{get_named_beta_schedule("cosine", steps)});
}

at::Generator generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

// Fills every step's history: step t sees losses (t + 1) * scale.
void fill(LossSecondMomentResampler& s, int64_t steps, int64_t rounds, double scale = 1.0) {
  for (int64_t r = 0; r < rounds; ++r) {
    std::vector<int64_t> ts;
    std::vector<double> losses;
    for (int64_t t = 0; t < steps; ++t) {
      ts.push_back(t);
      losses.push_back(static_cast<double>(t + 1) * scale);
    }
    s.update_with_all_losses(ts, losses);
  }
}

TEST(ScheduleSampler, UniformDrawsEveryStepWithUnitWeights) {
  const GaussianDiffusion d = diffusion_of(50);
  const auto sampler = create_named_schedule_sampler("uniform", d);
  for (double p : sampler->probabilities()) EXPECT_DOUBLE_EQ(p, 1.0 / 50);
  const auto [t, w] = sampler->sample(4096, c10::Device(c10::kCPU), generator(1));
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_EQ(w.scalar_type(), at::kFloat);
  EXPECT_EQ(t.sizes(), at::IntArrayRef{4096});
  EXPECT_EQ(t.min().item<int64_t>(), 0);
  EXPECT_EQ(t.max().item<int64_t>(), 49);
  EXPECT_TRUE(at::allclose(w, at::ones({4096})));
  EXPECT_EQ(dynamic_cast<LossAwareSampler*>(sampler.get()), nullptr);
}

TEST(ScheduleSampler, LossSecondMomentIsUniformUntilWarmedUp) {
  const GaussianDiffusion d = diffusion_of(4);
  LossSecondMomentResampler s(d);
  fill(s, 4, 9);                                         // 9 of 10 losses everywhere
  s.update_with_all_losses({0, 1, 2}, {5.0, 5.0, 5.0});  // step 3 still lacks one
  EXPECT_FALSE(s.warmed_up());
  for (double p : s.probabilities()) EXPECT_DOUBLE_EQ(p, 0.25);
  s.update_with_all_losses({3}, {4.0});
  EXPECT_TRUE(s.warmed_up());
  EXPECT_NE(s.probabilities()[0], 0.25);
}

TEST(ScheduleSampler, LossSecondMomentMatchesHandComputedValues) {
  const GaussianDiffusion d = diffusion_of(4);
  LossSecondMomentResampler s(d);
  fill(s, 4, 10);
  // sqrt(E[L^2]) = t + 1; normalised by 1+2+3+4 = 10, mixed with 0.001 of uniform.
  std::vector<double> expected;
  for (int64_t t = 0; t < 4; ++t) expected.push_back((t + 1) / 10.0 * 0.999 + 0.001 / 4);
  std::vector<double> p = s.probabilities();
  for (int64_t t = 0; t < 4; ++t) EXPECT_NEAR(p[t], expected[t], 1e-15) << t;

  // The 11th loss of step 0 pushes out the oldest: history = nine 1s and one 21.
  s.update_with_all_losses({0}, {21.0});
  const double w0 = std::sqrt((9 * 1.0 + 21.0 * 21.0) / 10);
  const double total = w0 + 2 + 3 + 4;
  p = s.probabilities();
  EXPECT_NEAR(p[0], w0 / total * 0.999 + 0.001 / 4, 1e-15);
  EXPECT_NEAR(p[3], 4 / total * 0.999 + 0.001 / 4, 1e-15);

  // Weights are 1 / (T p_t) for the drawn t.
  const auto [t, w] = s.sample(256, c10::Device(c10::kCPU), generator(2));
  for (int64_t i = 0; i < 256; ++i) {
    const int64_t ti = t[i].item<int64_t>();
    EXPECT_FLOAT_EQ(w[i].item<float>(), static_cast<float>(1.0 / (4 * p[ti]))) << ti;
  }
}

TEST(ScheduleSampler, TensorUpdateFromGatheredRanks) {
  const GaussianDiffusion d = diffusion_of(3);
  LossSecondMomentResampler a(d), b(d);
  fill(a, 3, 10, 0.5);
  // Two "ranks" worth of losses, already gathered, as tensors.
  for (int r = 0; r < 10; ++r) {
    b.update_with_all_losses(at::tensor({0, 1, 2}, at::kLong), at::tensor({0.5f, 1.0f, 1.5f}));
  }
  EXPECT_EQ(a.probabilities(), b.probabilities());
}

TEST(ScheduleSampler, WeightsKeepTheLossUnbiased) {
  // E_p[w(t) L(t)] = mean_t L(t) whatever p is.
  const int64_t T = 8;
  const GaussianDiffusion d = diffusion_of(T);
  LossSecondMomentResampler s(d);
  fill(s, T, 10);
  const at::Tensor loss_of_t = at::arange(T, at::kDouble).pow(2) + 1;
  const auto [t, w] = s.sample(200000, c10::Device(c10::kCPU), generator(3));
  const double estimate = (w.to(at::kDouble) * loss_of_t.index_select(0, t)).mean().item<double>();
  EXPECT_NEAR(estimate, loss_of_t.mean().item<double>(), 0.01 * loss_of_t.mean().item<double>());
}

TEST(ScheduleSampler, FactoryNamesAndError) {
  const GaussianDiffusion d = diffusion_of(10);
  EXPECT_NE(dynamic_cast<LossSecondMomentResampler*>(
                create_named_schedule_sampler("loss-second-moment", d).get()),
            nullptr);
  try {
    create_named_schedule_sampler("importance", d);
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("`schedule_sampler` 'importance'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("uniform, loss-second-moment"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace idiff
