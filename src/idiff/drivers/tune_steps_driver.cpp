#include "idiff/drivers/tune_steps_driver.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/sampler_setup.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include <cmath>

namespace idiff {

namespace {

// x_T draws with their labels and fine solutions.
struct Batch {
  at::Tensor x_T, y, reference;
};

}  // namespace

TuneResult run_tune_steps(const TuneJob& tj) {
  const SampleConfig& s = tj.job.sample;
  const ModelConfig& m = tj.job.model;
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError, "`model_path` is required");
  IDIFF_REQUIRE(!s.steps_file.empty(), ConfigError,
                "`steps_file` is required: where to write the steps");
  if (is_karras(tj.job.diffusion)) {
    IDIFF_REQUIRE(is_consistency(tj.job.diffusion.training_mode), ConfigError, "`training_mode` ",
                  tj.job.diffusion.training_mode,
                  ": tune-steps tunes Gaussian-diffusion models and consistency models' ts; an "
                  "EDM model samples with `idiff sample --sampler ... --steps N`");
    return run_tune_ts(tj);
  }
  IDIFF_REQUIRE(tj.tune.teacher_model_path.empty(), ConfigError,
                "`teacher_model_path` is for a consistency model's ts (`sampler` multistep)");
  IDIFF_REQUIRE(s.steps >= 1, ConfigError, "`steps` is required: the number of steps to tune");
  IDIFF_REQUIRE(s.num_samples >= 1 && s.batch_size >= 1, ConfigError,
                "`num_samples` and `batch_size` must be at least 1");
  IDIFF_REQUIRE(tj.tune.reference_steps == 0 || tj.tune.reference_steps >= 2, ConfigError,
                "`reference_steps` must be 0 (every step) or at least 2, got ",
                tj.tune.reference_steps);
  // The schedule comes from the search: sampler_setup must not read the output file. The
  // setting is exactly `idiff sample`'s with these flags (start, cap, clipping).
  SampleConfig flags = s;
  flags.steps_file.clear();
  const SamplerSetup setup = sampler_setup(flags, tj.job.diffusion);
  const NoiseSchedule ns = noise_schedule_of(setup.params);
  const double t_start = setup.schedule.levels.front();
  // The fine solution from the same start, with the same thresholding.
  SamplerSetup ref_setup = setup;
  ref_setup.solver = SolverOptions();
  ref_setup.solver.name = tj.tune.reference_sampler;
  if (tj.tune.reference_steps == 0) {
    ref_setup.schedule = every_step_schedule(t_start);
    ref_setup.schedule_name = str("every step from t=", t_start);
  } else {
    ref_setup.schedule = make_step_schedule(ns, "logsnr", tj.tune.reference_steps, t_start);
    ref_setup.schedule_name = str("logsnr from t=", t_start);
  }

  const c10::Device device = resolve_device(s.device);
  Logger logger(Logger::choose_dir(s.log_dir), false);
  logger.log("device: " + describe_device(device));
  if (!setup.defaults_note.empty()) logger.log(setup.defaults_note);
  UNetModel model = load_model(m, false, s.model_path, device);

  c10::InferenceMode inference;
  const auto fn_for = [&model](const at::Tensor& y) -> ModelFn {
    return [&model, y](const at::Tensor& x, const at::Tensor& t) {
      ModelKwargs kw;
      kw.y = y;
      return model->forward_kwargs(x, t, kw);
    };
  };
  // Calibration draws (seeded by --seed) and as many held-out ones from another stream.
  // Labels among the classes the model was trained on (flags.json), as idiff sample draws them.
  const size_t named = read_class_names(s.model_path).size();
  const int64_t classes = named > 0 ? static_cast<int64_t>(named) : kNumClasses;
  const auto draw_batches = [&](uint64_t seed) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    std::vector<Batch> batches;
    for (int64_t done = 0; done < s.num_samples; done += s.batch_size) {
      const int64_t n = std::min(s.batch_size, s.num_samples - done);
      Batch b;
      b.x_T = draw_normal({n, m.image_channels, m.image_size, m.image_size},
                          at::TensorOptions().device(device), gen);
      if (m.class_cond) b.y = at::randint(0, classes, {n}, gen, at::kLong).to(device);
      b.reference = run_sampler(*make_solver(ref_setup, fn_for(b.y)), b.x_T, {});
      batches.push_back(b);
    }
    return batches;
  };
  logger.log("fine solution: " + describe(*make_solver(ref_setup, fn_for({})), ref_setup));
  const std::vector<Batch> calibration = draw_batches(s.seed);
  const std::vector<Batch> held_out = draw_batches(s.seed ^ 0x686f6c646f7574ull);
  const auto error_on = [&](const std::vector<Batch>& batches, const StepSchedule& schedule) {
    double sum = 0.0;
    int64_t count = 0;
    for (const Batch& b : batches) {
      SamplerSetup trial = setup;
      trial.schedule = schedule;
      const at::Tensor x = run_sampler(*make_solver(trial, fn_for(b.y)), b.x_T, {});
      sum += (x - b.reference).pow(2).sum().item<double>();
      count += x.numel();
    }
    return std::sqrt(sum / static_cast<double>(count));
  };
  TuneOptions o;
  o.steps = s.steps;
  o.t_start = t_start;
  o.final_zero = s.final_sigma == "zero";
  o.sigma_max = setup.sigma_max;
  o.iterations = tj.tune.iterations;
  logger.log(str("tuning ", s.steps, " steps of ", setup.solver.name, " on ", s.num_samples,
                 " calibration samples (RMS error against the fine solution):"));
  TuneResult r = tune_step_schedule(
      ns, o, [&](const StepSchedule& t) { return error_on(calibration, t); },
      [&](const std::string& line) { logger.log(line); });
  // Kept only when it beats the best fixed schedule on draws it was not fitted to.
  const StepSchedule fixed =
      make_step_schedule(ns, r.initial_name, o.steps, o.t_start, o.final_zero, o.sigma_max);
  const double held_fixed = error_on(held_out, fixed), held_tuned = error_on(held_out, r.schedule);
  const bool keep_tuned = held_tuned < held_fixed;
  logger.log(str("held-out draws: tuned ", held_tuned, ", ", r.initial_name, " ", held_fixed,
                 keep_tuned ? ": writing the tuned steps"
                            : ": tuning did not help there, writing the fixed schedule"));
  if (!keep_tuned) r.schedule = fixed;
  nlohmann::json info;
  info["sampler"] = setup.solver.name;
  info["diffusion_steps"] = ns.num_timesteps();
  info["noise_schedule"] = tj.job.diffusion.noise_schedule;
  info["final_sigma"] = s.final_sigma;
  info["clip_denoised"] = s.clip_denoised;
  info["error"] = r.error;
  info["initial_schedule"] = r.initial_name;
  info["initial_error"] = r.initial_error;
  info["held_out_error"] = keep_tuned ? held_tuned : held_fixed;
  info["held_out_error_fixed"] = held_fixed;
  info["tuned"] = keep_tuned;
  info["reference"] = describe(*make_solver(ref_setup, fn_for({})), ref_setup);
  write_steps_file(s.steps_file, r.schedule, info.dump());
  logger.log(str("error ", r.error, " (", r.initial_name, ": ", r.initial_error, ") after ",
                 r.evaluations, " evaluations; steps written to ", s.steps_file));
  return r;
}

}  // namespace idiff
