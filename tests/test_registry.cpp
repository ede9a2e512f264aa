// The extension points' tables: every sampler row constructs and samples, its settings are
// documented and checked where they are defined, the README's table is the registry, and
// every setting that shapes the samples is one the ranks agree on.
#include "test_util.h"

#include "idiff/common/strings.h"
#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/drivers/ranks.h"
#include "idiff/model/factory.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

#include <fstream>
#include <functional>
#include <set>

namespace idiff {
namespace {

DiffusionParams cosine_params() {
  DiffusionParams p;
  p.betas = get_named_beta_schedule("cosine", 1000);
  return p;
}

// A model whose output depends on x and t, so two different inputs give different samples.
at::Tensor toy_model(const at::Tensor& x, const at::Tensor& t) {
  return 0.5 * at::tanh(x) * at::cos(t.to(at::kFloat) / 300.0).view({-1, 1, 1, 1}) + 0.2 * x;
}

at::Tensor sample_with(const SamplerRow& row, const at::Tensor& x_T) {
  const DiffusionParams params = cosine_params();
  const NoiseSchedule ns = noise_schedule_of(params);
  // Reference rows on respaced integer steps; the others on Karras levels from t = 300, as
  // many steps and ending where the row says (from the top, multistep's fresh noise would
  // swamp the toy model's clipped x_0 at every level).
  const StepSchedule schedule =
      row.engine == nullptr
          ? respacing_schedule(1000, "4")
          : make_step_schedule(ns, "karras", row.fixed_steps > 0 ? row.fixed_steps : 4, 300,
                               !row.final_min);
  SolverOptions o;
  o.name = row.name;
  const auto solver = make_solver(o, params, schedule, toy_model, {});
  EXPECT_EQ(solver->name(), row.name);
  SampleOptions opts;
  opts.generator = at::detail::createCPUGenerator(3);
  return run_sampler(*solver, x_T, opts);
}

TEST(SamplerRegistry, EveryRowConstructsAndSamples) {
  std::set<std::string> names;
  at::manual_seed(0);
  const at::Tensor a = at::randn({2, 3, 4, 4}), b = at::randn({2, 3, 4, 4});
  for (const SamplerRow& row : sampler_registry()) {
    SCOPED_TRACE(row.name);
    EXPECT_TRUE(names.insert(row.name).second) << "two rows named " << row.name;
    EXPECT_GT(std::string(row.help).size(), 10u);
    EXPECT_TRUE(row.engine != nullptr || row.reference != ReferenceSampler::None);
    const at::Tensor from_a = sample_with(row, a), from_b = sample_with(row, b);
    EXPECT_TRUE(at::isfinite(from_a).all().item<bool>());
    EXPECT_GT((from_a - from_b).abs().max().item<double>(), 1e-3) << "ignores x_T";
    EXPECT_EQ(&find_sampler(row.name), &row);
  }
  EXPECT_NE(test::error_of([] { find_sampler("dpm_fast"); }).find(sampler_names()),
            std::string::npos);
}

TEST(SamplerRegistry, EachSettingIsDocumentedAndCheckedWhereItIsDefined) {
  unsigned all = 0;
  for (const SolverSettingRow& s : solver_settings()) {
    EXPECT_GT(std::string(s.help).size(), 5u) << s.name;
    all |= s.bit;
  }
  for (const SamplerRow& row : sampler_registry()) {
    EXPECT_EQ(row.settings & ~all, 0u) << row.name << " reads an undocumented setting";
  }
  // A bad value is an error naming the flag for a sampler that reads it, and not looked at
  // by one that does not.
  const std::vector<std::pair<std::string, std::function<void(SolverOptions&)>>> bad = {
      {"eta", [](SolverOptions& o) { o.eta = -1; }},
      {"order", [](SolverOptions& o) { o.order = 5; }},
      {"unipc_variant", [](SolverOptions& o) { o.unipc_variant = "bh3"; }}};
  for (const auto& [flag, spoil] : bad) {
    SolverOptions o;
    spoil(o);
    for (const SamplerRow& row : sampler_registry()) {
      bool reads = false;
      for (const std::string& name : split(setting_names(row.settings), ',')) {
        reads = reads || trim(name) == flag;
      }
      const std::string err = test::error_of([&] { check_solver_settings(row, o); });
      EXPECT_EQ(err.find("`" + flag + "`") != std::string::npos, reads) << row.name << ": " << err;
    }
  }
}

TEST(SamplerRegistry, SettingsASamplerDoesNotReadAreNamed) {
  SolverOptions o;
  o.eta = 0.5;
  o.order = 3;
  EXPECT_EQ(unread_settings(find_sampler("unipc"), o), std::vector<std::string>{"`eta` 0.5"});
  EXPECT_EQ(unread_settings(find_sampler("ddim"), o), std::vector<std::string>{"`order` 3"});
  EXPECT_TRUE(unread_settings(find_sampler("heun"), SolverOptions{}).empty());
}

// The README's sampler table is made from the rows: this is the table it must hold.
TEST(SamplerRegistry, TheReadmeTableIsTheRegistry) {
  std::ifstream in(test::data_path("../../README.md"));
  ASSERT_TRUE(in.good());
  const std::string header = "| `--sampler` | what it is | settings it reads |";
  std::string line;
  while (std::getline(in, line) && line != header) {
  }
  ASSERT_EQ(line, header) << "README.md has no sampler table";
  std::getline(in, line);  // | --- | --- | --- |
  std::vector<std::string> got, want;
  while (std::getline(in, line) && line.rfind("|", 0) == 0) got.push_back(line);
  for (const SamplerRow& row : sampler_registry()) {
    std::string settings;
    for (const std::string& s : split(setting_names(row.settings), ',')) {
      settings += (settings.empty() ? "" : ", ") + (s == "none" ? "-" : "`--" + trim(s) + "`");
    }
    want.push_back(str("| `", row.name, "` | ", row.help, " | ", settings, " |"));
  }
  EXPECT_EQ(got, want);
}

// Ranks that differ in any of these would write one samples file from two different runs:
// each is in the settings the ranks compare, under a name that says which flag it is.
TEST(SamplerRegistry, TheRanksAgreeOnEverySettingThatShapesTheSamples) {
  SampleConfig base_config;
  base_config.sampler = "unipc";
  base_config.steps = 10;
  DiffusionConfig diffusion;
  diffusion.diffusion_steps = 1000;
  const auto settings_of = [&](const SampleConfig& s, const DiffusionConfig& d) {
    return sampling_settings(s, sampler_setup(s, d));
  };
  const RankSettings base = settings_of(base_config, diffusion);
  const std::vector<std::pair<std::string, std::function<void(SampleConfig&)>>> changes = {
      {"sampler", [](SampleConfig& s) { s.sampler = "dpmpp_2m"; }},
      {"steps", [](SampleConfig& s) { s.steps = 12; }},
      {"schedule", [](SampleConfig& s) { s.schedule = "karras"; }},
      {"t_start", [](SampleConfig& s) { s.t_start = 500; }},
      {"final_sigma", [](SampleConfig& s) { s.final_sigma = "min"; }},
      {"order", [](SampleConfig& s) { s.order = 3; }},
      {"unipc_variant", [](SampleConfig& s) { s.unipc_variant = "bh1"; }},
      {"lower_order_final", [](SampleConfig& s) { s.lower_order_final = false; }},
      {"clip_denoised", [](SampleConfig& s) { s.clip_denoised = false; }},
      {"dynamic_threshold", [](SampleConfig& s) { s.dynamic_threshold = 0.99; }},
      {"seed", [](SampleConfig& s) { s.seed = 7; }},
      {"class", [](SampleConfig& s) { s.classes = "3"; }},
      {"init_image", [](SampleConfig& s) { s.init_image = "x.png"; }},
      {"initial_noise", [](SampleConfig& s) { s.initial_noise = "x.pt"; }},
      {"save_float", [](SampleConfig& s) { s.save_float = true; }},
      {"eta", [](SampleConfig& s) {
         s.sampler = "ddim";
         s.eta = 0.5;
       }}};
  for (const auto& [flag, change] : changes) {
    SampleConfig changed = base_config;
    change(changed);
    const RankSettings got = settings_of(changed, diffusion);
    bool named = false;
    for (size_t i = 0; i < std::max(got.size(), base.size()); ++i) {
      if (i < got.size() && i < base.size() && got[i] == base[i]) continue;
      named = named || (i < got.size() && got[i].first.find("`" + flag + "`") != std::string::npos);
    }
    EXPECT_TRUE(named) << "--" << flag << " is not among the settings the ranks compare";
  }
  // The steps however spelled: --timestep_respacing instead of --steps.
  SampleConfig respaced;
  DiffusionConfig d2 = diffusion;
  d2.timestep_respacing = "10";
  EXPECT_NE(settings_of(respaced, d2), settings_of(respaced, diffusion));
}

// Every objective row builds, draws timesteps in range with their weights and noise like the
// images, and its losses depend on the model (two models, two losses).
TEST(ObjectiveRegistry, EveryRowConstructsAndItsLossesDependOnTheModel) {
  DiffusionConfig dc;
  dc.diffusion_steps = 10;
  dc.noise_schedule = "cosine";
  const GaussianDiffusion diffusion = create_gaussian_diffusion(dc);
  const TrainConfig tc;
  at::manual_seed(1);
  TrainBatch batch;
  batch.images = at::rand({4, 3, 8, 8}) * 2 - 1;
  const ModelFn a = [](const at::Tensor& x, const at::Tensor&) { return 0.1 * x; };
  const ModelFn b = [](const at::Tensor& x, const at::Tensor&) { return at::tanh(x); };
  for (const ObjectiveRow& row : objective_registry()) {
    SCOPED_TRACE(row.name);
    EXPECT_GT(std::string(row.help).size(), 10u);
    DiffusionConfig row_dc = dc;  // the row's own family
    row_dc.training_mode = row.name;
    // The consistency rows' networks (target, teacher) are small UNets of their own.
    const ModelConfig mc = test::small_unet_config();
    const bool distills =
        row.name == std::string("consistency_distillation") || row.name == std::string("progdist");
    const UNetModel teacher = distills ? create_model(mc) : nullptr;
    TrainConfig row_tc = tc;
    if (row.name == std::string("progdist")) row_tc.scale_mode = "progdist";  // its schedule
    const auto objective = row.make(ObjectiveContext{diffusion, row_tc, row_dc, mc, teacher});
    EXPECT_EQ(objective->name(), row.name);
    const ObjectiveDraws d = objective->draw(batch, batch.images);
    ASSERT_EQ(d.t.sizes(), (at::IntArrayRef{4}));
    EXPECT_GE(d.t.min().item<int64_t>(), 0);
    EXPECT_LT(d.t.max().item<int64_t>(), objective->num_timesteps());
    EXPECT_EQ(d.weights.sizes(), (at::IntArrayRef{4}));
    EXPECT_EQ(d.noise.sizes(), batch.images.sizes());
    const at::Tensor x = batch.images.narrow(0, 1, 2);
    const at::Tensor la = objective->losses(a, x, d, 1, 2, {}).at("loss");
    const at::Tensor lb = objective->losses(b, x, d, 1, 2, {}).at("loss");
    EXPECT_EQ(la.sizes(), (at::IntArrayRef{2}));
    EXPECT_TRUE(at::isfinite(la).all().item<bool>());
    EXPECT_GT((la - lb).abs().max().item<double>(), 1e-4);
    EXPECT_EQ(&find_objective(row.name), &row);
  }
  EXPECT_NE(test::error_of([] { find_objective("edm2"); }).find(objective_names()),
            std::string::npos);
}

}  // namespace
}  // namespace idiff
