// `idiff tune-steps` of a consistency model (tune_steps_driver.h): the multistep sampler's ts
// searched against the fine ODE solution of the model it was distilled from, the role of
// consistency_models' scripts/ternary_search.py (which searches the middle index of two-step
// sampling by FID). Here the quality signal needs no download: the RMS distance of the
// samples to the teacher's fine Heun solution from the same x_T (unit noise at the model's
// sigma_max), and the search is greedy, one index per added call, so it reaches any number
// of calls. The result is kept only where it beats evenly spaced ts on held-out draws.
#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/drivers/tune_steps_driver.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace idiff {
namespace {

// Draws of unit noise (and labels), with the teacher's fine solution from them.
struct Draws {
  at::Tensor unit, y, fine;
};

ModelFn fn_for(UNetModel model, const at::Tensor& y) {
  return [model, y](const at::Tensor& x, const at::Tensor& t) mutable {
    ModelKwargs kw;
    kw.y = y;
    return model->forward_kwargs(x, t, kw);
  };
}

// The samples of `setup` from the unit noise placed at its first level. multistep's fresh
// noise comes from one fixed seed, so every candidate is judged on the same draws.
at::Tensor solve(const SamplerSetup& setup, const UNetModel& model, const Draws& d) {
  const auto solver = make_solver(setup, fn_for(model, d.y));
  SampleOptions o;
  o.generator = at::make_generator<at::CPUGeneratorImpl>(4);
  const double sigma = noise_schedule_of(setup).level(setup.schedule.levels.front()).sigma;
  return run_sampler(*solver, d.unit * sigma, o).clamp(-1, 1);
}

// The teacher's fine solution: Heun steps of its own family from the level of `sigma_max`.
SamplerSetup teacher_setup(const TuneJob& tj, const DiffusionConfig& td, double sigma_max) {
  SampleConfig c;
  c.sampler = "heun";
  c.steps = tj.tune.reference_steps > 0 ? tj.tune.reference_steps : 128;
  c.clip_denoised = tj.job.sample.clip_denoised;
  c.sigma_max = sigma_max;
  if (!is_karras(td)) {
    // Starting at the level of sigma_max itself (no cap to step down to first).
    c.schedule = "karras";
    c.t_start = noise_schedule_of(diffusion_params(td)).level_of_sigma_k(sigma_max).t;
    c.sigma_max = 0;
  }
  return sampler_setup(c, td);
}

std::string ts_text(const std::vector<int64_t>& ts) {
  std::vector<std::string> parts;
  for (int64_t t : ts) parts.push_back(std::to_string(t));
  return join(parts, ",");
}

}  // namespace

TuneResult run_tune_ts(const TuneJob& tj) {
  const SampleConfig& s = tj.job.sample;
  const ModelConfig& m = tj.job.model;
  IDIFF_REQUIRE(
      s.sampler == "multistep", ConfigError, "`training_mode` ", tj.job.diffusion.training_mode,
      ": tune-steps searches a consistency model's `ts` (`sampler` multistep), not ", s.sampler);
  IDIFF_REQUIRE(!tj.tune.teacher_model_path.empty(), ConfigError,
                "`teacher_model_path` is required: the model this one was distilled from, whose "
                "fine solution the ts are fitted to");
  IDIFF_REQUIRE(s.ts.empty(), ConfigError, "`ts` is what tune-steps searches: give `model_calls`");
  const int64_t steps = s.steps > 0 ? s.steps : 40;
  IDIFF_REQUIRE(tj.tune.model_calls < steps, ConfigError, "`model_calls` ", tj.tune.model_calls,
                " needs more than that many Karras levels (`steps` ", steps, ")");
  SampleConfig flags = s;
  flags.steps_file.clear();
  flags.steps = steps;
  const auto student_setup = [&](const std::vector<int64_t>& ts) {
    SampleConfig c = flags;
    c.ts = ts_text(ts);
    return sampler_setup(c, tj.job.diffusion);
  };
  const SamplerSetup first = student_setup({0, steps - 1});
  const ModelConfig& tm = tj.teacher_flags ? tj.teacher_model : m;
  IDIFF_REQUIRE(tm.image_size == m.image_size && tm.image_channels == m.image_channels, ConfigError,
                "`teacher_model_path` ", tj.tune.teacher_model_path, " makes ", tm.image_channels,
                "-channel ", tm.image_size, "x", tm.image_size, " images, the model ",
                m.image_channels, "-channel ", m.image_size, "x", m.image_size);
  DiffusionConfig td = tj.teacher_diffusion;
  if (!tj.teacher_flags) {
    td = tj.job.diffusion;  // an EDM network of the model's flags, as the reference's teachers
    td.training_mode = "edm";
  }
  const SamplerSetup teacher = teacher_setup(tj, td, first.karras->sigma_max);

  const c10::Device device = resolve_device(s.device);
  Logger logger(Logger::choose_dir(s.log_dir), false);
  logger.log("device: " + describe_device(device));
  const UNetModel model = load_model(m, false, s.model_path, device, true);
  logger.log("loading the teacher " + tj.tune.teacher_model_path + "...");
  const UNetModel teacher_net =
      load_model(tm, false, tj.tune.teacher_model_path, device, is_karras(td));
  c10::InferenceMode inference;
  const size_t named = read_class_names(s.model_path).size();
  const int64_t classes = named > 0 ? static_cast<int64_t>(named) : kNumClasses;
  const auto draws = [&](uint64_t seed) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    Draws d;
    d.unit = draw_normal({s.num_samples, m.image_channels, m.image_size, m.image_size},
                         at::TensorOptions().device(device), gen);
    if (m.class_cond) d.y = at::randint(0, classes, {s.num_samples}, gen, at::kLong).to(device);
    d.fine = solve(teacher, teacher_net, d);
    return d;
  };
  logger.log("fine solution: the teacher's " + describe(*make_solver(teacher, {}), teacher));
  const Draws calibration = draws(s.seed), held_out = draws(s.seed ^ 0x686f6c646f7574ull);
  int64_t evaluations = 0;
  const auto error_on = [&](const Draws& d, const std::vector<int64_t>& ts) {
    ++evaluations;
    const at::Tensor x = solve(student_setup(ts), model, d);
    return (x - d.fine).pow(2).mean().sqrt().item<double>();
  };

  std::vector<int64_t> ts = {0, steps - 1};
  const double one_call = error_on(calibration, ts);
  logger.log(str("1 call (onestep): error ", one_call));
  double error = one_call;
  for (int64_t calls = 2; calls <= tj.tune.model_calls; ++calls) {
    std::vector<int64_t> best_ts;
    double best = -1;
    for (int64_t k = 1; k < steps - 1; ++k) {
      if (std::find(ts.begin(), ts.end(), k) != ts.end()) continue;
      std::vector<int64_t> cand = ts;
      cand.insert(std::upper_bound(cand.begin(), cand.end(), k), k);
      const double e = error_on(calibration, cand);
      if (best < 0 || e < best) best = e, best_ts = cand;
    }
    ts = best_ts;
    error = best;
    logger.log(str(calls, " calls: --ts ", ts_text(ts), " error ", best));
  }
  // Evenly spaced ts of as many calls: what the search must beat on draws it did not see.
  std::vector<int64_t> even;
  const int64_t k = tj.tune.model_calls;
  for (int64_t i = 0; i <= k; ++i)
    even.push_back(static_cast<int64_t>(std::lround(static_cast<double>(i * (steps - 1)) / k)));
  const double held_tuned = error_on(held_out, ts), held_even = error_on(held_out, even);
  const bool keep = held_tuned <= held_even;
  logger.log(str("held-out draws: --ts ", ts_text(ts), " ", held_tuned, ", evenly spaced --ts ",
                 ts_text(even), " ", held_even,
                 keep ? ": writing the searched ts"
                      : ": the search did not help there, writing "
                        "the evenly spaced ts"));
  if (!keep) ts = even;
  if (error > one_call) {
    logger.log(str("onestep is closer to the teacher (", one_call,
                   " on the calibration draws): "
                   "more calls do not help this model"));
  }
  TuneResult r;
  r.schedule = student_setup(ts).schedule;
  r.error = keep ? error : error_on(calibration, ts);
  r.initial_name = "onestep";
  r.initial_error = one_call;
  r.evaluations = evaluations;
  nlohmann::json info;
  info["sampler"] = "multistep";
  info["ts"] = ts;
  info["steps"] = steps;
  info["sigma_min"] = first.karras->sigma_min;
  info["sigma_max"] = first.karras->sigma_max;
  info["error"] = r.error;
  info["held_out_error"] = keep ? held_tuned : held_even;
  info["held_out_error_even"] = held_even;
  info["tuned"] = keep;
  info["reference"] = "the teacher " + tj.tune.teacher_model_path + ": " +
                      describe(*make_solver(teacher, {}), teacher);
  write_steps_file(s.steps_file, r.schedule, info.dump());
  logger.log(str("--ts ", ts_text(ts), " --steps ", steps, " (", tj.tune.model_calls,
                 " model calls) written to ", s.steps_file, " (idiff sample --steps_file)"));
  return r;
}

}  // namespace idiff
