// `idiff classifier-train` (guided-diffusion's scripts/classifier_train.py): flags ->
// ClassifierTrainJob -> run_classifier_training.
#include "command.h"
#include "flags.h"

#include "signals.h"

#include "idiff/common/device.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/drivers/classifier_train.h"

namespace idiff::cli {
namespace {

void setup(CLI::App& sub) {
  auto job = std::make_shared<ClassifierTrainJob>();
  // classifier_and_diffusion_defaults(): guided-diffusion's diffusion defaults.
  job->diffusion.defaults = "guided-diffusion";
  job->diffusion.rescale_timesteps = false;
  job->diffusion.rescale_learned_sigmas = false;
  ClassifierTrainConfig& t = job->train;
  Flags f(sub);
  const std::string g = "Training";
  f.add("data_dir", t.data_dir, "labelled images (as idiff train's --data_dir)")->group(g);
  f.add("val_data_dir", t.val_data_dir, "labelled validation images (optional)")->group(g);
  f.add("noised", t.noised, "train on noised images at sampled timesteps")->group(g);
  f.add("iterations", t.iterations, {1, kMaxSteps}, "training steps")->group(g);
  f.add("lr", t.lr, {0.0, kNoMax}, "AdamW learning rate")->group(g);
  f.add("weight_decay", t.weight_decay, {0.0, kNoMax}, "AdamW weight decay")->group(g);
  f.add("anneal_lr", t.anneal_lr, "anneal the learning rate linearly to 0")->group(g);
  f.add("batch_size", t.batch_size, kBatchRange, "images per step")->group(g);
  f.add("microbatch", t.microbatch, {-1, kBatchRange.max}, "microbatch size (-1: off)")->group(g);
  f.add("schedule_sampler", t.schedule_sampler, "timestep sampler: uniform or loss-second-moment")
      ->group(g);
  f.add("resume_checkpoint", t.resume_checkpoint, "path/to/modelNNNNNN.pt to resume from")
      ->group(g);
  f.add("log_interval", t.log_interval, {1, kMaxSteps}, "steps between log lines")->group(g);
  f.add("eval_interval", t.eval_interval, {1, kMaxSteps}, "steps between validation batches")
      ->group(g);
  f.add("save_interval", t.save_interval, {1, kMaxSteps}, "steps between checkpoints")->group(g);
  const std::string a = "idiff additions";
  f.add("log_dir", t.log_dir, "output folder (else $OPENAI_LOGDIR, else /tmp/openai-<time>)")
      ->group(a);
  f.add("seed", t.seed, "seed of the weights, data order, timesteps and noise")->group(a);
  f.add("device", t.device, "auto, cpu, cuda or cuda:N")->group(a);
  f.add("num_workers", t.num_workers, kWorkersRange, "background image-decoding threads")->group(a);
  add_max_image_pixels_flag(sub, t.max_image_pixels);
  f.add("image_size", job->model.image_size, kImageSideRange, "image side: 64, 128, 256 or 512")
      ->group("Classifier (guided-diffusion)");
  f.add("image_channels", job->model.image_channels, {1, 3}, "image channels: 3 (RGB) or 1 (grey)")
      ->group("Classifier (guided-diffusion)");
  add_classifier_flags(f, job->classifier);
  add_diffusion_flags(sub, job->diffusion);
  sub.callback([job] {
    install_stop_signal_handlers();
    job->stop = stop_signal_name;
    tune_for_device(resolve_device(job->train.device));
    run_classifier_training(*job);
  });
}

const bool registered = register_command(
    {"classifier-train",
     "train a noisy-image classifier for classifier guidance (scripts/classifier_train.py)", 35,
     setup});

}  // namespace
}  // namespace idiff::cli
