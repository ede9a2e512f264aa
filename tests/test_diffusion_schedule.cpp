// Beta schedules, respacing and the diffusion factory against the reference: betas and
// summaries from schedules.json / betas_*.safetensors, every space_timesteps case, the
// reference's error texts, and the flag -> type mapping of create_gaussian_diffusion.
#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/respace.h"

#include <cmath>
#include <numeric>

namespace idiff {
namespace {

using test::load_fixture;
using test::load_json;

// The message of the ConfigError `f` throws ("" if it throws none).
template <typename F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

at::Tensor to_tensor(const std::vector<double>& v) {
  return at::tensor(v, at::kDouble);
}

TEST(BetaSchedule, MatchesReferenceArrays) {
  for (const std::string name : {"linear", "cosine"}) {
    for (int64_t steps : {1000, 4000}) {
      const std::string key = name + "_" + std::to_string(steps);
      const at::Tensor expected = load_fixture("betas_" + key + ".safetensors").at("betas");
      const std::vector<double> betas = get_named_beta_schedule(name, steps);
      ASSERT_EQ(static_cast<int64_t>(betas.size()), steps) << key;
      const double max_diff = (to_tensor(betas) - expected).abs().max().item<double>();
      EXPECT_LE(max_diff, 1e-12) << key;
    }
  }
}

TEST(BetaSchedule, MatchesReferenceSummaries) {
  const auto summaries = load_json("schedules.json");
  for (const std::string name : {"linear", "cosine"}) {
    for (int64_t steps : {1000, 4000}) {
      const std::string key = name + "_" + std::to_string(steps);
      const auto& s = summaries[key];
      const std::vector<double> betas = get_named_beta_schedule(name, steps);
      EXPECT_NEAR(betas.front(), s["first"].get<double>(), 1e-15) << key;
      EXPECT_NEAR(betas.back(), s["last"].get<double>(), 1e-15) << key;
      const double sum = std::accumulate(betas.begin(), betas.end(), 0.0);
      EXPECT_NEAR(sum, s["sum"].get<double>(), 1e-12 * sum) << key;
    }
  }
}

TEST(BetaSchedule, CosineFollowsAlphaBarAndClips) {
  // Nichol & Dhariwal eq. 17: prod(1 - beta) = f(t)/f(0) until the clip at 0.999 bites.
  const int64_t T = 1000;
  const std::vector<double> betas = get_named_beta_schedule("cosine", T);
  auto f = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
  double prod = 1.0;
  for (int64_t i = 0; i < 500; ++i) prod *= 1.0 - betas[i];
  EXPECT_NEAR(prod, f(0.5) / f(0.0), 1e-12);
  EXPECT_EQ(*std::max_element(betas.begin(), betas.end()), 0.999);
}

TEST(BetaSchedule, UnknownNameListsAllowedValues) {
  const std::string msg = config_error([] { get_named_beta_schedule("quadratic", 1000); });
  EXPECT_NE(msg.find("`noise_schedule`"), std::string::npos) << msg;
  EXPECT_NE(msg.find("quadratic"), std::string::npos) << msg;
  EXPECT_NE(msg.find("linear, cosine"), std::string::npos) << msg;
  EXPECT_NE(config_error([] { get_named_beta_schedule("linear", 0); }).find("`diffusion_steps`"),
            std::string::npos);
}

TEST(SpaceTimesteps, EveryReferenceCase) {
  const auto cases = load_json("schedules.json")["space_timesteps"];
  ASSERT_GE(cases.size(), 10u);
  for (auto it = cases.begin(); it != cases.end(); ++it) {
    const std::string key = it.key();
    const size_t colon = key.find(':');
    const int64_t steps = std::stoll(key.substr(0, colon));
    const std::string counts = key.substr(colon + 1);
    if (it.value().is_string()) {
      const std::string msg = config_error([&] { space_timesteps(steps, counts); });
      EXPECT_NE(msg.find(it.value().get<std::string>()), std::string::npos) << key << ": " << msg;
      continue;
    }
    const auto expected = it.value().get<std::vector<int64_t>>();
    const std::set<int64_t> got = space_timesteps(steps, counts);
    EXPECT_EQ(std::vector<int64_t>(got.begin(), got.end()), expected) << key;
  }
}

TEST(SpaceTimesteps, ReferenceBehaviourAtTheEdges) {
  // Checked against the reference: Python's round() rounds halves to even, ddimT is stride 1.
  const std::set<int64_t> s = space_timesteps(10, "3,3");
  EXPECT_EQ(std::vector<int64_t>(s.begin(), s.end()), (std::vector<int64_t>{0, 2, 4, 5, 7, 9}));
  EXPECT_EQ(space_timesteps(1000, "ddim1000").size(), 1000u);
  const std::set<int64_t> d7 = space_timesteps(1000, "ddim7");
  EXPECT_EQ(std::vector<int64_t>(d7.begin(), d7.end()),
            (std::vector<int64_t>{0, 143, 286, 429, 572, 715, 858}));
}

TEST(SpaceTimesteps, ImpossibleRequestsGiveTheReferenceErrors) {
  struct Case {
    int64_t steps;
    std::string counts, text;
  };
  const std::vector<Case> cases = {
      {1000, "ddim999", "cannot create exactly 1000 steps with an integer stride"},
      {1000, "ddim1", "cannot create exactly 1000 steps with an integer stride"},
      {1000, "400,10,10", "cannot divide section of 334 steps into 400"},
      {10, "1,1,1,1,1,1,1,1,1,1,1", "cannot divide section of 0 steps into 1"},
      {1000, "ten", "is not an integer"},
      {1000, "10,,20", "is not an integer"},
      {1000, "ddim", "is not an integer"},
      {1000, "0", "must be positive"},
      {1000, "10,-5", "must be positive"},
  };
  for (const auto& c : cases) {
    const std::string msg = config_error([&] { space_timesteps(c.steps, c.counts); });
    EXPECT_NE(msg.find(c.text), std::string::npos) << c.counts << ": '" << msg << "'";
    EXPECT_NE(msg.find("`timestep_respacing`"), std::string::npos) << msg;
  }
}

TEST(SpacedDiffusion, KeepsAlphaBarOfTheKeptSteps) {
  const DiffusionParams base{get_named_beta_schedule("cosine", 1000)};
  const GaussianDiffusion full(base);
  const std::set<int64_t> keep = space_timesteps(1000, "10,15,20");
  const SpacedDiffusion spaced(keep, base);
  ASSERT_EQ(spaced.num_timesteps(), 45);
  EXPECT_EQ(spaced.original_num_steps(), 1000);
  EXPECT_EQ(spaced.timestep_map(), std::vector<int64_t>(keep.begin(), keep.end()));
  for (int64_t i = 0; i < spaced.num_timesteps(); ++i) {
    const double expected = full.schedule().alphas_cumprod[spaced.timestep_map()[i]];
    EXPECT_NEAR(spaced.schedule().alphas_cumprod[i], expected, 1e-9 * expected) << i;
  }
}

TEST(SpacedDiffusion, ModelSeesOriginalAndRescaledTimesteps) {
  DiffusionParams p{get_named_beta_schedule("linear", 4000)};
  const at::Tensor t = at::tensor({0, 4, 9}, at::kLong);
  p.rescale_timesteps = false;
  const SpacedDiffusion plain(space_timesteps(4000, "10"), p);
  const at::Tensor mapped = plain.model_timesteps(t);
  EXPECT_EQ(mapped.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(mapped, at::tensor({0, 1777, 4000 - 1}, at::kLong))) << mapped;
  p.rescale_timesteps = true;
  const SpacedDiffusion rescaled(space_timesteps(4000, "10"), p);
  const at::Tensor scaled = rescaled.model_timesteps(t);
  EXPECT_EQ(scaled.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(scaled, at::tensor({0.0f, 444.25f, 999.75f}))) << scaled;
}

TEST(DiffusionFactory, FlagsPickTheReferenceTypes) {
  DiffusionConfig c;  // the reference's defaults
  SpacedDiffusion d = create_gaussian_diffusion(c);
  EXPECT_EQ(d.loss_type(), LossType::RescaledMSE);
  EXPECT_EQ(d.model_var_type(), ModelVarType::FixedLarge);
  EXPECT_EQ(d.model_mean_type(), ModelMeanType::Epsilon);
  EXPECT_TRUE(d.rescale_timesteps());
  EXPECT_EQ(d.num_timesteps(), 1000);

  c.rescale_learned_sigmas = false;
  EXPECT_EQ(create_gaussian_diffusion(c).loss_type(), LossType::MSE);
  c.use_kl = true;
  EXPECT_EQ(create_gaussian_diffusion(c).loss_type(), LossType::RescaledKL);
  c.sigma_small = true;
  EXPECT_EQ(create_gaussian_diffusion(c).model_var_type(), ModelVarType::FixedSmall);
  c.learn_sigma = true;
  EXPECT_EQ(create_gaussian_diffusion(c).model_var_type(), ModelVarType::LearnedRange);
  c.predict_xstart = true;
  EXPECT_EQ(create_gaussian_diffusion(c).model_mean_type(), ModelMeanType::StartX);

  c.diffusion_steps = 4000;
  c.noise_schedule = "cosine";
  c.timestep_respacing = "ddim50";
  d = create_gaussian_diffusion(c);
  EXPECT_EQ(d.num_timesteps(), 50);
  EXPECT_EQ(d.original_num_steps(), 4000);
  EXPECT_EQ(d.timestep_map()[1], 80);

  // The fixtures' recorded types.
  for (const std::string name : {"unet_tiny", "unet_tiny_cc"}) {
    const auto meta = load_json(name + ".json");
    DiffusionConfig fc = test::diffusion_config_from_flags(meta["flags"]);
    for (const std::string variant : {"base", "kl"}) {
      fc.use_kl = variant == "kl";
      const SpacedDiffusion fd = create_gaussian_diffusion(fc);
      const auto& e = meta["diffusion"][variant];
      EXPECT_EQ(std::string("LossType.") + enum_name(fd.loss_type()), e["loss_type"]) << name;
      EXPECT_EQ(std::string("ModelVarType.") + enum_name(fd.model_var_type()), e["var_type"]);
      EXPECT_EQ(std::string("ModelMeanType.") + enum_name(fd.model_mean_type()), e["mean_type"]);
      EXPECT_EQ(fd.num_timesteps(), e["num_timesteps"].get<int64_t>());
    }
  }
}

TEST(DiffusionFactory, BadSettingsNameTheFlag) {
  DiffusionConfig c;
  c.noise_schedule = "sigmoid";
  std::string msg = config_error([&] { create_gaussian_diffusion(c); });
  EXPECT_NE(msg.find("`noise_schedule` 'sigmoid'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("linear, cosine"), std::string::npos) << msg;

  c = DiffusionConfig{};
  c.timestep_respacing = "ddim999";
  msg = config_error([&] { create_gaussian_diffusion(c); });
  EXPECT_NE(msg.find("`timestep_respacing`"), std::string::npos) << msg;

  c.timestep_respacing = "1";
  msg = config_error([&] { create_gaussian_diffusion(c); });
  EXPECT_NE(msg.find("at least 2"), std::string::npos) << msg;

  c = DiffusionConfig{};
  c.diffusion_steps = 1;
  msg = config_error([&] { create_gaussian_diffusion(c); });
  EXPECT_NE(msg.find("`diffusion_steps`"), std::string::npos) << msg;
}

}  // namespace
}  // namespace idiff
