// `idiff sample` (scripts/image_sample.py), `idiff super-res-sample`
// (scripts/super_res_sample.py) and `idiff nll` (scripts/image_nll.py).
#include "command.h"
#include "flags.h"

#include "signals.h"

#include "idiff/common/error.h"
#include "idiff/common/rng.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/common/strings.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/dist_env.h"
#include "idiff/drivers/image_nll.h"
#include "idiff/drivers/image_sample.h"

#include <iostream>

namespace idiff::cli {
namespace {

enum class Mode { Sample, SuperRes, Nll, Edit };

// The reference's image_sample.py draws new images on every run: without --seed a random
// seed is chosen and printed (samples.json records it too), so --seed repeats the run. The
// ranks of one launch must share a seed: they keep 0 unless --seed is given.
void choose_seed(const CLI::App& sub, uint64_t& seed) {
  const CLI::Option* given = sub.get_option_no_throw("--seed");
  if (given != nullptr && given->count() > 0) return;
  if (read_dist_env().world_size > 1) {
    std::cout << "seed 0 (--seed not given; the ranks of one launch share it)\n";
    return;
  }
  seed = random_seed();
  std::cout << "seed " << seed << " (random; --seed " << seed << " repeats this run)\n";
}

void setup(CLI::App& sub, Mode mode) {
  auto job = std::make_shared<SampleJob>();
  job->super_res = mode == Mode::SuperRes;
  SampleConfig& s = job->sample;
  if (mode == Mode::Nll) {  // image_nll.py's defaults
    s.num_samples = 1000;
    s.batch_size = 1;
  }
  if (job->super_res) {
    job->model.large_size = 256;
    job->model.small_size = 64;
  }
  Flags f(sub);
  const std::string g = mode == Mode::Nll ? "Evaluation" : "Sampling";
  CLI::Option* model_path =
      f.add("model_path", s.model_path, "checkpoint to load (.pt or .safetensors; model or EMA)")
          ->group(g);
  // `idiff sample ema.pt`, as `idiff info ema.pt`.
  sub.add_option("checkpoint", s.model_path, "the checkpoint, as --model_path")
      ->excludes(model_path)
      ->group(g);
  f.add("clip_denoised", s.clip_denoised, "clip x_0 predictions to [-1, 1]")->group(g);
  f.add("num_samples", s.num_samples, {1, 1000000000},
        mode == Mode::Nll ? "images to evaluate" : "images to generate")
      ->group(g);
  f.add("batch_size", s.batch_size, kBatchRange, "images per batch")->group(g);
  if (mode == Mode::Nll) {
    f.add("data_dir", s.data_dir, "images to evaluate (as idiff train's --data_dir)")->group(g);
  } else {
    f.add("use_ddim", s.use_ddim, "sample with DDIM instead of ancestral sampling")->group(g);
  }
  if (mode == Mode::SuperRes) {
    f.add("base_samples", s.base_samples, "samples_*.npz of low-resolution images to upsample")
        ->group(g);
  }
  const std::string a = "idiff additions";
  if (mode != Mode::Nll) {
    add_sampler_flags(f, s);
    sub.footer(sampler_table_help());
    if (mode == Mode::Edit) {
      const std::string ge = "Editing";
      f.add("task", s.edit_task, "inpaint, colorize or superres (8x8 patch means kept)")->group(ge);
      f.add("image", s.edit_image, "the image to edit (resized as training data)")->group(ge);
      f.add("mask", s.edit_mask, "inpaint: white where the image is kept, black to fill")
          ->group(ge);
      f.add("resample_jumps", s.resample_jumps, {0, 1000},
            "improved-/guided-diffusion models (RePaint): times each stretch of jump_length "
            "steps is sampled (1: replacement only; 0: 10)")
          ->group(ge);
      f.add("jump_length", s.jump_length, {0, 100000},
            "RePaint: steps taken down before going back up (0: 10)")
          ->group(ge);
    }
    if (mode == Mode::Sample || mode == Mode::Edit) {
      f.add("class", s.classes, "class labels to sample, e.g. 3 or 3,7 (cycled; default: random)")
          ->group(a);
    }
    if (mode == Mode::Sample) {
      const std::string gg = "Guidance";
      f.add("classifier_path", s.classifier_path,
            "classifier guidance with this noisy-image classifier (guided-diffusion's)")
          ->group(gg);
      f.add("classifier_scale", s.classifier_scale, {0.0, kNoMax},
            "scale of the classifier's gradient")
          ->group(gg);
      f.add("guidance_scale", s.guidance_scale, {0.0, kNoMax},
            "classifier-free guidance: uncond + s (cond - uncond) (1: off; needs a model "
            "trained with --class_dropout_prob)")
          ->group(gg);
      add_classifier_flags(f, job->classifier);
    }
    f.add("save_pngs", s.save_pngs, "also write one PNG per sample")->group(a);
    f.add("cuda_graph", s.cuda_graph,
          "CUDA: replay each sampling step as one captured CUDA graph (no effect on the CPU)")
        ->group(a);
    f.add("initial_noise", s.initial_noise,
          "start from this x_T (a tensor file [num_samples, 3, H, W])")
        ->group(a);
    f.add("grid_size", s.grid_size, {0, 65536}, "samples shown in samples_grid.png (0: no grid)")
        ->group(a);
  } else {
    f.add("num_workers", s.num_workers, kWorkersRange, "background image-decoding threads")
        ->group(a);
    add_max_image_pixels_flag(sub, s.max_image_pixels);
  }
  f.add("seed", s.seed, "seed of the noise and random labels (sample: random when not given)")
      ->group(a);
  f.add("log_dir", s.log_dir, "output folder (else $OPENAI_LOGDIR, else /tmp/openai-<time>)")
      ->group(a);
  // The short name people expect for "where the output goes" (the reference has none).
  sub.add_option("-o,--output", s.log_dir, "the output folder (the same as --log_dir)")->group(a);
  f.add("device", s.device, "auto, cpu, cuda or cuda:N")->group(a);
  f.add("dist_timeout", s.dist_timeout, kDistTimeoutRange,
        "multi-process runs: seconds to wait for the other ranks before giving up")
      ->group(a);
  add_model_and_diffusion_flags(sub, job->model, job->diffusion, job->super_res);
  f.add("use_fp16", job->model.use_fp16,
        "run the model's torso in float16 (guided-diffusion's; float32 weights are converted)")
      ->group("Model (guided-diffusion)");
  f.add("use_bf16", job->model.use_bf16,
        "run the model's torso in bfloat16 (idiff's alternative to --use_fp16 on CUDA)")
      ->group("Model (idiff additions)");
  sub.callback([job, mode, &sub] {
    apply_checkpoint_flags(sub, job->sample.model_path);
    if (mode != Mode::Nll) choose_seed(sub, job->sample.seed);
    // Allocator reuse on the CPU; not cuDNN autotuning, whose choice of algorithm may
    // differ between runs (a seed gives the same samples on a device).
    const c10::Device device = DistContext::device_for_local_rank(job->sample.device);
    if (device.is_cpu()) tune_for_device(device);
    if (mode == Mode::Nll) {
      run_nll(*job);
      return;
    }
    // Ctrl-C ends the run after the current round with the finished samples written.
    install_stop_signal_handlers();
    job->stop = stop_signal_name;
    const SampleResult r = run_sampling(*job);
    if (!r.stopped.empty()) {
      throw Interrupted(str(r.stopped, " after ", r.images.size(0), " of ", job->sample.num_samples,
                            " samples; those are in ", r.npz_path, " (samples.json: partial)"));
    }
  });
}

const bool registered_sample =
    register_command({"sample", "generate images from a checkpoint (scripts/image_sample.py)", 20,
                      [](CLI::App& sub) { setup(sub, Mode::Sample); }});
const bool registered_sr =
    register_command({"super-res-sample", "upsample a samples file (scripts/super_res_sample.py)",
                      40, [](CLI::App& sub) { setup(sub, Mode::SuperRes); }});
const bool registered_edit =
    register_command({"edit",
                      "inpaint, colorize, superres: zero-shot with a consistency model "
                      "(consistency_models' iterative_inpainting ...), RePaint with others",
                      25, [](CLI::App& sub) { setup(sub, Mode::Edit); }});
const bool registered_nll =
    register_command({"nll", "bits/dim of images under a model (scripts/image_nll.py)", 50,
                      [](CLI::App& sub) { setup(sub, Mode::Nll); }});

}  // namespace
}  // namespace idiff::cli
