#include "idiff/drivers/tune_steps_driver.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/sampler_setup.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <nlohmann/json.hpp>

#include <cmath>

namespace idiff {

TuneResult run_tune_steps(const TuneJob& tj) {
  const SampleConfig& s = tj.job.sample;
  const ModelConfig& m = tj.job.model;
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError, "`model_path` is required");
  IDIFF_REQUIRE(s.steps >= 1, ConfigError, "`steps` is required: the number of steps to tune");
  IDIFF_REQUIRE(!s.steps_file.empty(), ConfigError,
                "`steps_file` is required: where to write the steps");
  IDIFF_REQUIRE(s.num_samples >= 1 && s.batch_size >= 1, ConfigError,
                "`num_samples` and `batch_size` must be at least 1");
  IDIFF_REQUIRE(tj.tune.reference_steps >= 2, ConfigError,
                "`reference_steps` must be at least 2, got ", tj.tune.reference_steps);
  // The schedule comes from the search: sampler_setup must not read the output file.
  SampleConfig flags = s;
  flags.steps_file.clear();
  const SamplerSetup setup = sampler_setup(flags, tj.job.diffusion);
  SampleConfig ref_flags = flags;
  ref_flags.sampler = tj.tune.reference_sampler;
  ref_flags.steps = tj.tune.reference_steps;
  ref_flags.schedule = "logsnr";
  const SamplerSetup ref_setup = sampler_setup(ref_flags, tj.job.diffusion);

  const c10::Device device = resolve_device(s.device);
  Logger logger(Logger::choose_dir(s.log_dir), false);
  logger.log("device: " + describe_device(device));
  UNetModel model = load_model(m, false, s.model_path, device);
  const NoiseSchedule ns = noise_schedule_of(setup.params);

  // Calibration batches and their fine solutions.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s.seed);
  struct Batch {
    at::Tensor x_T, y, reference;
  };
  std::vector<Batch> batches;
  c10::InferenceMode inference;
  const auto fn_for = [&model](const at::Tensor& y) -> ModelFn {
    return [&model, y](const at::Tensor& x, const at::Tensor& t) {
      ModelKwargs kw;
      kw.y = y;
      return model->forward_kwargs(x, t, kw);
    };
  };
  for (int64_t done = 0; done < s.num_samples; done += s.batch_size) {
    const int64_t n = std::min(s.batch_size, s.num_samples - done);
    Batch b;
    b.x_T =
        draw_normal({n, 3, m.image_size, m.image_size}, at::TensorOptions().device(device), gen);
    if (m.class_cond) b.y = at::randint(0, kNumClasses, {n}, gen, at::kLong).to(device);
    const auto ref = make_solver(ref_setup, fn_for(b.y));
    if (batches.empty()) logger.log("fine solution: " + describe(*ref, ref_setup));
    b.reference = run_sampler(*ref, b.x_T, {});
    batches.push_back(b);
  }
  const ScheduleError error_of = [&](const StepSchedule& schedule) {
    double sum = 0.0;
    int64_t count = 0;
    for (const Batch& b : batches) {
      SamplerSetup trial = setup;
      trial.schedule = schedule;
      const auto solver = make_solver(trial, fn_for(b.y));
      const at::Tensor x = run_sampler(*solver, b.x_T, {});
      sum += (x - b.reference).pow(2).sum().item<double>();
      count += x.numel();
    }
    return std::sqrt(sum / static_cast<double>(count));
  };
  TuneOptions o;
  o.steps = s.steps;
  o.t_start = s.t_start;
  o.final_zero = s.final_sigma == "zero";
  o.iterations = tj.tune.iterations;
  logger.log(str("tuning ", s.steps, " steps of ", setup.solver.name, " on ", s.num_samples,
                 " calibration samples (RMS error against the fine solution):"));
  const TuneResult r =
      tune_step_schedule(ns, o, error_of, [&](const std::string& line) { logger.log(line); });
  nlohmann::json info;
  info["sampler"] = setup.solver.name;
  info["diffusion_steps"] = ns.num_timesteps();
  info["noise_schedule"] = tj.job.diffusion.noise_schedule;
  info["final_sigma"] = s.final_sigma;
  info["error"] = r.error;
  info["initial_schedule"] = r.initial_name;
  info["initial_error"] = r.initial_error;
  info["reference"] = describe(*make_solver(ref_setup, fn_for({})), ref_setup);
  write_steps_file(s.steps_file, r.schedule, info.dump());
  logger.log(str("error ", r.error, " (", r.initial_name, ": ", r.initial_error, ") after ",
                 r.evaluations, " evaluations; steps written to ", s.steps_file));
  return r;
}

}  // namespace idiff
