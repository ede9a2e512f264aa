// `idiff tune-steps`: a step schedule fitted to a checkpoint and a solver, for
// `idiff sample --steps_file`.
#include "command.h"
#include "flags.h"

#include "idiff/diffusion/factory.h"
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
        "its steps (0: every step of the process; else a logsnr schedule; a consistency model's "
        "teacher: Heun steps, 0: 128)")
      ->group(g);
  f.add("iterations", job->tune.iterations, {0, 1000}, "sweeps of the coordinate search")->group(g);
  const std::string gc = "Consistency models (--sampler multistep: the ts searched)";
  f.add("teacher_model_path", job->tune.teacher_model_path,
        "the model it was distilled from (its flags from its flags.json): the fine solution")
      ->group(gc);
  f.add("model_calls", job->tune.model_calls, {2, 1000}, "the ts' model calls")->group(gc);
  add_sampler_flags(f, s, false);
  const std::string a = "idiff additions";
  f.add("seed", s.seed, "seed of the calibration noise (and labels)")->group(a);
  f.add("log_dir", s.log_dir, "log folder (else $OPENAI_LOGDIR, else /tmp/openai-<time>)")
      ->group(a);
  f.add("device", s.device, "auto, cpu, cuda or cuda:N")->group(a);
  add_model_and_diffusion_flags(sub, job->job.model, job->job.diffusion, false);
  sub.callback([job, &sub] {
    apply_checkpoint_flags(sub, job->job.sample.model_path);
    // A consistency model's sampler to tune is multistep (its ts).
    if (is_karras(job->job.diffusion) && sub.get_option("--sampler")->count() == 0)
      job->job.sample.sampler = "multistep";
    job->teacher_flags = read_teacher_flags(job->tune.teacher_model_path, job->teacher_model,
                                            job->teacher_diffusion);
    run_tune_steps(*job);
  });
}

const bool registered = register_command(
    {"tune-steps", "fit a sampler's step schedule to a checkpoint (for sample --steps_file)", 25,
     [](CLI::App& sub) { setup(sub); }});

}  // namespace
}  // namespace idiff::cli
