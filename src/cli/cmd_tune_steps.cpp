// `idiff tune-steps`: a step schedule fitted to a checkpoint and a solver, for
// `idiff sample --steps_file`.
#include "command.h"
#include "flags.h"

#include "idiff/drivers/tune_steps_driver.h"

namespace idiff::cli {
namespace {

void setup(CLI::App& sub) {
  auto job = std::make_shared<TuneJob>();
  SampleConfig& s = job->job.sample;
  s.num_samples = 16;
  s.batch_size = 16;
  s.sampler = "dpmpp_2m";
  Flags f(sub);
  const std::string g = "Tuning";
  CLI::Option* model_path =
      f.add("model_path", s.model_path, "checkpoint to load (.pt or .safetensors; model or EMA)")
          ->group(g);
  // `idiff sample ema.pt`, as `idiff info ema.pt`.
  sub.add_option("checkpoint", s.model_path, "the checkpoint, as --model_path")
      ->excludes(model_path)
      ->group(g);
  f.add("num_samples", s.num_samples, {1, 1000000000}, "calibration samples")->group(g);
  f.add("batch_size", s.batch_size, kBatchRange, "samples per batch")->group(g);
  f.add("clip_denoised", s.clip_denoised, "clip x_0 predictions to [-1, 1] (as sampling will)")
      ->group(g);
  f.add("reference_sampler", job->tune.reference_sampler, "the solver of the fine solution")
      ->group(g);
  f.add("reference_steps", job->tune.reference_steps, {0, 100000},
        "its steps (0: every step of the process; else a logsnr schedule)")
      ->group(g);
  f.add("iterations", job->tune.iterations, {0, 1000}, "sweeps of the coordinate search")->group(g);
  add_sampler_flags(f, s, false);
  const std::string a = "idiff additions";
  f.add("seed", s.seed, "seed of the calibration noise (and labels)")->group(a);
  f.add("log_dir", s.log_dir, "log folder (else $OPENAI_LOGDIR, else /tmp/openai-<time>)")
      ->group(a);
  f.add("device", s.device, "auto, cpu, cuda or cuda:N")->group(a);
  add_model_and_diffusion_flags(sub, job->job.model, job->job.diffusion, false);
  sub.callback([job, &sub] {
    apply_checkpoint_flags(sub, job->job.sample.model_path);
    run_tune_steps(*job);
  });
}

const bool registered = register_command(
    {"tune-steps", "fit a sampler's step schedule to a checkpoint (for sample --steps_file)", 25,
     [](CLI::App& sub) { setup(sub); }});

}  // namespace
}  // namespace idiff::cli
