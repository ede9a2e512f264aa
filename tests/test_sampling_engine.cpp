// The sampling engine (diffusion/sampling/) against closed forms: for Gaussian data
// x_0 ~ N(mu, s^2 I) the exact denoiser and the exact probability-flow ODE solution are
// known, so each solver's error must fall with the step count at its order, and the
// stochastic samplers must reproduce the data's mean and spread. Also: the reference's
// samplers equal the engine's formulas on integer steps, every solver gives the same
// samples through the graph path's static buffers, and the schedules and steps files.
#include "test_util.h"

#include "idiff/common/error.h"

#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/diffusion/sampling/tune_steps.h"
#include "idiff/drivers/sampler_setup.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <map>

namespace idiff {
namespace {

constexpr double kMu = 0.3, kS = 0.5;

DiffusionParams cosine_params(bool predict_xstart = false) {
  DiffusionParams p;
  p.betas = get_named_beta_schedule("cosine", 1000);
  p.model_mean_type = predict_xstart ? ModelMeanType::StartX : ModelMeanType::Epsilon;
  return p;
}

// The exact denoiser of N(kMu, kS^2) data: E[x_0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 +
// sigma^2) (x_t - alpha mu), returned as epsilon (or x_0) like a network would.
ModelFn gaussian_model(const NoiseSchedule& ns, bool predict_xstart) {
  return [&ns, predict_xstart](const at::Tensor& x, const at::Tensor& t) {
    const NoiseLevel l = ns.level(t[0].item<double>());
    const double a = l.alpha, s = l.sigma;
    const at::Tensor x0 = kMu + a * kS * kS / (a * a * kS * kS + s * s) * (x - a * kMu);
    return predict_xstart ? x0 : (x - a * x0) / s;
  };
}

// The probability-flow ODE carries z = (x - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) unchanged.
at::Tensor exact_solution(const at::Tensor& x, const NoiseLevel& from, const NoiseLevel& to) {
  const auto spread = [](const NoiseLevel& l) {
    return std::sqrt(l.alpha * l.alpha * kS * kS + l.sigma * l.sigma);
  };
  return to.alpha * kMu + spread(to) * (x - from.alpha * kMu) / spread(from);
}

struct OdeRun {
  double error;   // max |x - exact| at the last level
  int64_t calls;  // model calls
};

OdeRun solve(const SolverOptions& o, const std::string& schedule, int64_t steps, bool final_zero,
             bool predict_xstart = false) {
  const DiffusionParams params = cosine_params(predict_xstart);
  const NoiseSchedule ns = noise_schedule_of(params);
  const StepSchedule sched = make_step_schedule(ns, schedule, steps, 900, final_zero);
  DenoiserOptions d;
  d.threshold = Threshold::None;
  auto solver = make_solver(o, params, sched, gaussian_model(ns, predict_xstart), d);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor x = at::randn({16, 2, 2, 2}, gen, at::kDouble);
  const at::Tensor out = run_sampler(*solver, x, {});
  const at::Tensor want =
      exact_solution(x, ns.level(sched.levels.front()), ns.level(sched.levels.back()));
  return {(out - want).abs().max().item<double>(), solver->total_model_calls()};
}

SolverOptions named(const std::string& name, int64_t order = 2,
                    const std::string& variant = "bh2") {
  SolverOptions o;
  o.name = name;
  o.order = order;
  o.unipc_variant = variant;
  o.lower_order_final = false;
  return o;
}

// The observed order: log2 of the error ratio when the steps double from 32 to 64 (the
// asymptotic range: at fewer steps errors of opposite sign can cancel). The multistep
// solvers start at first order, which bounds 3M's global order by 2 (its error is still
// the lower); UniPC's corrector raises its predictor's order by one.
TEST(SamplingEngine, EachSolversErrorFallsAtItsOrder) {
  struct Case {
    SolverOptions o;
    double order;
  };
  const std::vector<Case> cases = {
      {named("ddim"), 1},     {named("euler"), 1},           {named("heun"), 2},
      {named("dpmpp_2m"), 2}, {named("dpmpp_3m"), 2},        {named("unipc", 1), 2},
      {named("unipc", 2), 3}, {named("unipc", 2, "bh1"), 3}, {named("unipc", 3), 3}};
  std::map<std::string, double> at64;
  for (const Case& c : cases) {
    std::vector<double> err;
    for (int64_t n : {32, 64}) err.push_back(solve(c.o, "logsnr", n, false).error);
    const double slope = std::log2(err[0] / err[1]);
    const std::string label = str(c.o.name, " order ", c.o.order, " ", c.o.unipc_variant);
    EXPECT_GT(slope, c.order - 0.3) << label << ": errors " << err[0] << ", " << err[1];
    EXPECT_LT(slope, c.order + 1.0) << label << ": errors " << err[0] << ", " << err[1];
    at64[label] = err[1];
  }
  EXPECT_LT(at64["dpmpp_3m order 2 bh2"], 0.5 * at64["dpmpp_2m order 2 bh2"]);
  EXPECT_LT(at64["unipc order 3 bh2"], 0.1 * at64["unipc order 2 bh2"]);
}

TEST(SamplingEngine, XstartModelsSolveTheSameOde) {
  const OdeRun eps = solve(named("dpmpp_2m"), "karras", 12, true, false);
  const OdeRun x0 = solve(named("dpmpp_2m"), "karras", 12, true, true);
  EXPECT_NEAR(eps.error, x0.error, 1e-9);
  EXPECT_LT(eps.error, 0.1);
}

TEST(SamplingEngine, ModelCallsPerStep) {
  EXPECT_EQ(solve(named("dpmpp_3m"), "karras", 10, true).calls, 10);
  EXPECT_EQ(solve(named("unipc"), "karras", 10, true).calls, 10);
  EXPECT_EQ(solve(named("heun"), "karras", 10, true).calls, 19);  // the last step is Euler's
  EXPECT_EQ(solve(named("heun"), "karras", 10, false).calls, 20);
}

// Stochastic samplers draw from the data distribution: the mean and spread of many samples
// approach the data's as the steps grow (first-order methods: the spread's error halves
// when the steps double, about).
TEST(SamplingEngine, StochasticSamplersReproduceTheData) {
  const DiffusionParams params = cosine_params();
  const NoiseSchedule ns = noise_schedule_of(params);
  for (const std::string name : {"euler_a", "dpmpp_2m_sde", "ddim", "ddpm"}) {
    SolverOptions o = named(name);
    o.eta = 1.0;
    std::vector<double> spread_error;
    for (const int64_t steps : {100, 400}) {
      const StepSchedule sched = name == "ddpm" ? respacing_schedule(1000, std::to_string(steps))
                                                : make_step_schedule(ns, "logsnr", steps, -1, true);
      DenoiserOptions d;
      d.threshold = Threshold::None;
      auto solver = make_solver(o, params, sched, gaussian_model(ns, false), d);
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
      SampleOptions opts;
      opts.generator = gen;
      const at::Tensor x =
          run_sampler(*solver, at::randn({20000, 1, 1, 1}, gen, at::kDouble), opts);
      EXPECT_NEAR(x.mean().item<double>(), kMu, 0.015) << name << " " << steps;
      spread_error.push_back(std::abs(x.std().item<double>() - kS));
    }
    EXPECT_LT(spread_error[1], 0.012) << name;
    EXPECT_LT(spread_error[1], 0.6 * spread_error[0] + 0.004) << name;  // + sampling noise
  }
}

// On integer steps the reference's DDIM and the engine's DDIM (as Euler) are one method.
TEST(SamplingEngine, ReferenceDdimEqualsTheEnginesFormula) {
  const DiffusionParams params = cosine_params();
  const NoiseSchedule ns = noise_schedule_of(params);
  const StepSchedule sched = make_step_schedule(ns, "linspace", 20);
  ASSERT_TRUE(has_integer_levels(sched));
  DenoiserOptions d;
  d.threshold = Threshold::None;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor x = at::randn({4, 2, 3, 3}, gen, at::kDouble);
  auto reference = make_solver(named("ddim"), params, sched, gaussian_model(ns, false), d);
  auto engine = make_solver(named("euler"), params, sched, gaussian_model(ns, false), d);
  SampleOptions opts;
  opts.generator = gen;  // the reference's DDIM draws (unused) noise every step
  const at::Tensor a = run_sampler(*reference, x, opts), b = run_sampler(*engine, x, {});
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6);
  EXPECT_GT((a - x).abs().max().item<double>(), 0.1);  // it did move
}

// The CUDA-graph path's loop (static buffers, one per step variant) gives the eager loop's
// samples for every solver.
TEST(SamplingEngine, StaticBuffersEqualTheEagerLoopForEverySolver) {
  const DiffusionParams params = cosine_params();
  const NoiseSchedule ns = noise_schedule_of(params);
  DenoiserOptions d;  // clipping on, as sampling uses it
  for (const std::string name : {"ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc",
                                 "euler", "heun", "euler_a"}) {
    SolverOptions o = named(name, 3);
    o.eta = 0.5;
    const StepSchedule sched = name == "ddpm" ? respacing_schedule(1000, "8")
                                              : make_step_schedule(ns, "karras", 8, -1, true);
    const auto run = [&](bool buffers) {
      auto solver = make_solver(o, params, sched, gaussian_model(ns, false), d);
      at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
      SampleOptions opts;
      opts.generator = gen;
      LoopOptions loop;
      loop.static_buffers = buffers;
      loop.eager_steps = 1;
      return run_sampler(*solver, at::randn({3, 2, 4, 4}, gen), opts, loop);
    };
    EXPECT_TRUE(at::allclose(run(false), run(true), 0, 0)) << name;
  }
}

TEST(StepSchedule, NamedSchedulesSpanTheirRange) {
  const NoiseSchedule ns = noise_schedule_of(cosine_params());
  for (const std::string name : {"linspace", "leading", "trailing", "karras", "logsnr"}) {
    const StepSchedule s = make_step_schedule(ns, name, 10);
    EXPECT_EQ(s.num_steps(), 10) << name;
    EXPECT_TRUE(s.ends_clean()) << name;
    check_step_schedule(s, 1000, name);
  }
  // diffusers' spacings for 1000 steps in 10: linspace ends at 0 and 999, leading at 900,
  // trailing at 999 ... 99.
  EXPECT_EQ(make_step_schedule(ns, "linspace", 10).levels[1], 888);
  EXPECT_EQ(make_step_schedule(ns, "leading", 10).levels.front(), 900);
  EXPECT_EQ(make_step_schedule(ns, "trailing", 10).levels[9], 99);
  const StepSchedule k = make_step_schedule(ns, "karras", 10, 899, false);
  EXPECT_EQ(k.levels.front(), 899);
  EXPECT_NEAR(k.levels.back(), 0.0, 1e-9);
  EXPECT_EQ(k.num_steps(), 10);
  // log-SNR steps are equal.
  const StepSchedule l = make_step_schedule(ns, "logsnr", 4, -1, false);
  const double d0 = ns.lambda(l.levels[1]) - ns.lambda(l.levels[0]);
  const double d3 = ns.lambda(l.levels[4]) - ns.lambda(l.levels[3]);
  EXPECT_NEAR(d0, d3, 1e-9);
  // Fractional times interpolate lambda and invert exactly.
  EXPECT_NEAR(ns.t_of_lambda(ns.lambda(123.25)), 123.25, 1e-9);
}

TEST(StepSchedule, BadSchedulesAreClearErrors) {
  const NoiseSchedule ns = noise_schedule_of(cosine_params());
  EXPECT_NE(test::error_of([&] { make_step_schedule(ns, "cosine", 10); }).find("`schedule`"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { make_step_schedule(ns, "karras", 0); }).find("`steps`"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { make_step_schedule(ns, "karras", 10, 1500); }).find("`t_start`"),
            std::string::npos);
  // Rounding 30 levels into 20 timesteps repeats some.
  EXPECT_NE(test::error_of([&] { make_step_schedule(ns, "linspace", 30, 20); }).find("decrease"),
            std::string::npos);
  SolverOptions o;
  o.name = "dpm_fast";
  EXPECT_NE(test::error_of([&] {
              make_solver(o, cosine_params(), make_step_schedule(ns, "karras", 5), {}, {});
            }).find("dpmpp_2m"),
            std::string::npos);
  o.name = "ddpm";  // fractional steps
  EXPECT_NE(test::error_of([&] {
              make_solver(o, cosine_params(), make_step_schedule(ns, "karras", 5), {}, {});
            }).find("integer"),
            std::string::npos);
}

TEST(StepSchedule, StepsFilesRoundTripAndBadOnesAreErrors) {
  test::TempDir dir;
  const NoiseSchedule ns = noise_schedule_of(cosine_params());
  const StepSchedule s = make_step_schedule(ns, "karras", 7);
  write_steps_file(dir.file("s.json"), s, R"({"sampler": "unipc", "diffusion_steps": 1000})");
  EXPECT_EQ(read_steps_file(dir.file("s.json"), 1000).levels, s.levels);
  EXPECT_NE(test::error_of([&] { read_steps_file(dir.file("s.json"), 4000); }).find("4000"),
            std::string::npos);
  const auto write = [&](const std::string& text) {
    std::ofstream(dir.file("bad.json")) << text;
    return test::error_of([&] { read_steps_file(dir.file("bad.json"), 1000); });
  };
  EXPECT_NE(write("[1, 2]").find("levels"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [1, 500, -1]}").find("decrease"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [999, 2000, -1]}").find("outside"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [999, \"x\"]}").find("numbers"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [999,").find("bad.json"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read_steps_file(dir.file("none.json"), 1000); }).find("none.json"),
            std::string::npos);
  // Sampling must start from noise and end clean; nothing may follow the object.
  EXPECT_NE(write("{\"levels\": [999, 500]}").find("noisy level"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [0, -1]}").find("at least 1"), std::string::npos);
  EXPECT_NE(write("{\"levels\": [999, -1]} trailing").find("bad.json"), std::string::npos);
  EXPECT_EQ(write("{\"levels\": [999, 0]}\n"), "<no error>");  // ends at t = 0 (final "min")
  // A FIFO is refused, not waited on (the test would hang).
  ASSERT_EQ(::mkfifo(dir.file("fifo.json").c_str(), 0600), 0);
  EXPECT_NE(test::error_of([&] {
              read_steps_file(dir.file("fifo.json"), 1000);
            }).find("not a regular file"),
            std::string::npos);
}

// The search never ends worse than the best fixed schedule, and on the Gaussian problem
// it finds a clearly better one for a few steps.
// --sigma_max: from a start noisier than the cap, one step to the cap's level, then the
// spacing from there; no cap below it, for one step, or with 0.
TEST(StepSchedule, SigmaMaxCapsTheFirstStep) {
  const NoiseSchedule ns = noise_schedule_of(cosine_params());
  EXPECT_GT(ns.level(999).sigma_k(), 1e4);  // the cosine schedule's last step
  const StepSchedule capped = make_step_schedule(ns, "logsnr", 10, -1, true, 80.0);
  ASSERT_EQ(capped.num_steps(), 10);
  EXPECT_EQ(capped.levels[0], 999.0);
  EXPECT_NEAR(ns.level(capped.levels[1]).sigma_k(), 80.0, 1e-6 * 80);
  // The rest uniform in log-SNR from there to t = 0.
  const double step = ns.lambda(capped.levels[2]) - ns.lambda(capped.levels[1]);
  EXPECT_NEAR(ns.lambda(capped.levels[9]) - ns.lambda(capped.levels[8]), step, 1e-6);
  EXPECT_NEAR(ns.lambda(capped.levels[9]), ns.lambda(0), 1e-9);
  EXPECT_EQ(make_step_schedule(ns, "logsnr", 10, -1, true, 0.0).levels,
            make_step_schedule(ns, "logsnr", 10).levels);
  EXPECT_EQ(make_step_schedule(ns, "karras", 10, 400, true, 80.0).levels,
            make_step_schedule(ns, "karras", 10, 400).levels);  // sigma(400) < 80
  EXPECT_EQ(make_step_schedule(ns, "karras", 1, -1, true, 80.0).num_steps(), 1);
  EXPECT_NE(test::error_of([&] {
              make_step_schedule(ns, "karras", 5, -1, true, -2.0);
            }).find("`sigma_max`"),
            std::string::npos);
}

// The fine solutions' schedule: every integer step from the start, then sigma 0.
TEST(StepSchedule, EveryStepFromTheStart) {
  EXPECT_EQ(every_step_schedule(999).levels, respacing_schedule(1000, "").levels);
  EXPECT_EQ(every_step_schedule(2.5).levels, (std::vector<double>{2.5, 2, 1, 0, kCleanLevel}));
}

// The defaults --steps takes: UniPC on log-SNR steps, capped at sigma 80 when the model
// starts above it (the cosine and linear schedules of 1000 steps), and the log says so.
TEST(StepSchedule, DefaultsForStepsAreTheMeasuredOnes) {
  const ScheduleDefaults cosine = default_schedule(noise_schedule_of(cosine_params()), 10);
  EXPECT_EQ(cosine.name, "logsnr");
  EXPECT_EQ(cosine.sigma_max, 80.0);
  EXPECT_NE(cosine.why.find("x_0 prediction is the data's mean"), std::string::npos);
  DiffusionParams linear;
  linear.betas = get_named_beta_schedule("linear", 1000);
  EXPECT_EQ(default_schedule(noise_schedule_of(linear), 20).sigma_max, 80.0);  // 157 at the top
  linear.betas.resize(300);  // the first 300 steps: sigma ~1 at the top
  const ScheduleDefaults low = default_schedule(noise_schedule_of(linear), 10);
  EXPECT_EQ(low.name, "logsnr");
  EXPECT_EQ(low.sigma_max, 0.0);
  // Few steps: the trailing spacing, uncapped.
  const ScheduleDefaults few = default_schedule(noise_schedule_of(cosine_params()), 5);
  EXPECT_EQ(few.name, "trailing");
  EXPECT_EQ(few.sigma_max, 0.0);

  SampleConfig s;
  s.steps = 10;
  DiffusionConfig d;
  d.noise_schedule = "cosine";
  const SamplerSetup setup = sampler_setup(s, d);
  EXPECT_EQ(setup.solver.name, "unipc");
  EXPECT_EQ(
      setup.schedule.levels,
      make_step_schedule(noise_schedule_of(setup.params), "logsnr", 10, -1, true, 80.0).levels);
  EXPECT_NE(setup.defaults_note.find("--sampler unipc --schedule logsnr --sigma_max 80"),
            std::string::npos)
      << setup.defaults_note;
  // Given flags are not defaults; without --steps the reference's sampler stays the default.
  s.sampler = "dpmpp_2m";
  s.schedule = "karras";
  const std::string note = sampler_setup(s, d).defaults_note;
  EXPECT_EQ(note.find("--schedule"), std::string::npos);
  // The cap taken alone says why the cap, not why a schedule the user did not take.
  EXPECT_NE(note.find("--sigma_max 80 (x_T starts at sigma"), std::string::npos) << note;
  EXPECT_EQ(note.find("log-SNR"), std::string::npos) << note;
  s.steps = 5;
  EXPECT_NE(sampler_setup(s, d).defaults_note.find("the first step starts at x_T itself"),
            std::string::npos);
  EXPECT_EQ(sampler_setup(SampleConfig(), d).solver.name, "ddpm");
}

TEST(TuneSteps, BeatsTheFixedSchedulesOnTheCalibrationProblem) {
  const DiffusionParams params = cosine_params();
  const NoiseSchedule ns = noise_schedule_of(params);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor x = at::randn({8, 1, 2, 2}, gen, at::kDouble);
  DenoiserOptions d;
  d.threshold = Threshold::None;
  const ScheduleError error_of = [&](const StepSchedule& s) {
    auto solver = make_solver(named("dpmpp_2m"), params, s, gaussian_model(ns, false), d);
    const at::Tensor out = run_sampler(*solver, x, {});
    const at::Tensor want = exact_solution(x, ns.level(s.levels.front()), ns.level(kCleanLevel));
    return (out - want).pow(2).mean().sqrt().item<double>();
  };
  TuneOptions o;
  o.steps = 5;
  o.t_start = 899;
  o.iterations = 4;
  const TuneResult r = tune_step_schedule(ns, o, error_of);
  EXPECT_EQ(r.schedule.num_steps(), 5);
  EXPECT_EQ(r.schedule.levels.front(), 899);
  EXPECT_LT(r.error, 0.67 * r.initial_error);
  EXPECT_NEAR(r.error, error_of(r.schedule), 1e-12);
  for (const auto& [name, e] : r.fixed) EXPECT_LE(r.error, e) << name;
}

}  // namespace
}  // namespace idiff
