#include "idiff/drivers/sample_stages.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/strings.h"
#include "idiff/data/data_loader.h"
#include "idiff/data/image_datasets.h"
#include "idiff/data/image_grid.h"
#include "idiff/data/image_resize.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/karras_edit.h"
#include "idiff/distributed/rank_agreement.h"
#include "idiff/drivers/guided_models.h"
#include "idiff/drivers/load_model.h"
#include "idiff/io/atomic_file.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace idiff {
namespace {

std::string shape_name(const at::Tensor& nhwc) {
  return str("samples_", nhwc.size(0), "x", nhwc.size(1), "x", nhwc.size(2), "x", nhwc.size(3),
             ".npz");
}

// --init_image: one image, resized as training data is, [1, C, size, size] in [-1, 1].
at::Tensor read_init_image(const std::string& path, int64_t size, int64_t channels) {
  return init_image_tensor(decode_image_file(path, kDefaultMaxImagePixels, "resize it first"), size,
                           channels, "`init_image` " + path);
}

// --mask: white (above mid-grey) where the image is kept, [1, 1, size, size] of 0 and 1,
// resized as the image is.
at::Tensor read_mask(const std::string& path, int64_t size) {
  const at::Tensor grey = rgb_to_grey(read_init_image(path, size, 3));  // [1, 1, size, size]
  return (grey > 0).to(at::kFloat);
}

// --initial_noise: x_T for every sample, [num_samples, C, size, size] float32.
at::Tensor read_initial_noise(const std::string& path, int64_t num_samples, int64_t channels,
                              int64_t size) {
  const at::Tensor x_t = load_single_tensor(path);
  IDIFF_REQUIRE(x_t.is_floating_point() && at::isfinite(x_t).all().item<bool>(), FileError, path,
                ": x_T must hold finite floating-point values (found ",
                x_t.is_floating_point() ? "NaN or infinity" : c10::toString(x_t.scalar_type()),
                ")");
  const at::Tensor noise = x_t.to(at::kFloat);
  IDIFF_REQUIRE(noise.dim() == 4 && noise.size(0) == num_samples && noise.size(1) == channels &&
                    noise.size(2) == size && noise.size(3) == size,
                FileError, path, ": expected x_T of shape [", num_samples, ", ", channels, ", ",
                size, ", ", size, "] (`num_samples` images), got ", noise.sizes());
  return noise;
}

}  // namespace

at::Tensor init_image_tensor(const Image8& decoded, int64_t size, int64_t channels,
                             const std::string& what) {
  const Image8 rgb = reference_resize(decoded, static_cast<int>(size), what);
  at::Tensor out = at::empty({1, 3, size, size}, at::kFloat);
  rgb_to_chw_float(rgb, out.data_ptr<float>());
  return channels == 1 ? rgb_to_grey(out) : out;
}

void check_checkpoint_and_counts(const SampleConfig& s) {
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError,
                "`model_path` is required (a model or EMA checkpoint)");
  IDIFF_REQUIRE(s.num_samples >= 1, ConfigError, "`num_samples` must be at least 1, got ",
                s.num_samples);
  IDIFF_REQUIRE(s.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                s.batch_size);
}

void check_sample_job(const SampleJob& job) {
  const SampleConfig& s = job.sample;
  const ModelConfig& m = job.model;
  check_checkpoint_and_counts(s);
  IDIFF_REQUIRE(s.grid_size >= 0, ConfigError, "`grid_size` must be non-negative, got ",
                s.grid_size);
  // From the last step the image would be noised away: a plain sample, silently.
  IDIFF_REQUIRE(s.init_image.empty() || s.t_start >= 0, ConfigError,
                "`init_image` needs `t_start` (with `steps`): the timestep the image is noised to; "
                "from the last one the image would be lost in the noise");
  const bool classifier_guided = !s.classifier_path.empty();
  const std::vector<int64_t> classes = parse_classes(s.classes, read_class_names(s.model_path));
  IDIFF_REQUIRE(classes.empty() || m.class_cond || classifier_guided, ConfigError, "`class` ",
                s.classes,
                " needs a class-conditional model (`class_cond` True) or a classifier "
                "(`classifier_path`)");
  IDIFF_REQUIRE(classifier_guided || s.classifier_scale == 1.0, ConfigError,
                "`classifier_scale` needs a classifier (`classifier_path`)");
  IDIFF_REQUIRE(
      s.guidance_scale == 1.0 || (m.class_cond && m.class_dropout_prob > 0), ConfigError,
      "`guidance_scale` (classifier-free guidance) needs a class-conditional model "
      "trained with a null label (`class_cond` True, `class_dropout_prob` > 0)",
      m.class_cond ? "" : "; an unconditional model is guided by a classifier (`classifier_path`)");
  IDIFF_REQUIRE(s.edit_task.empty() || !s.edit_image.empty(), ConfigError,
                "`image` is required: the image to edit");
  IDIFF_REQUIRE(s.edit_task != "inpaint" || !s.edit_mask.empty(), ConfigError,
                "--task inpaint needs `mask` (white: keep)");
  IDIFF_REQUIRE(s.edit_task.empty() || s.init_image.empty(), ConfigError,
                "`init_image` starts SDEdit; `idiff edit` takes its image as `image`");
  IDIFF_REQUIRE(s.generator == "determ" || s.generator == "determ-indiv", ConfigError,
                "`generator` must be determ or determ-indiv, got '", s.generator, "'");
  IDIFF_REQUIRE(!is_karras(job.diffusion) || !job.super_res, ConfigError, "`training_mode` ",
                job.diffusion.training_mode, ": consistency_models has no super-resolution models");
  IDIFF_REQUIRE(!(classifier_guided && job.super_res), ConfigError,
                "`classifier_path`: classifier guidance is for `idiff sample`");
  for (int64_t c : classes) {
    IDIFF_REQUIRE(c >= 0 && c < kNumClasses, ConfigError, "`class`: ", c,
                  " is not a class of the model (0..", kNumClasses - 1, ")");
  }
}

SamplingModels load_sampling_models(const SampleJob& job, c10::Device device, Logger& logger) {
  const SampleConfig& s = job.sample;
  const ModelConfig& m = job.model;
  SamplingModels out;
  logger.log("loading " + s.model_path + "...");
  logger.log("diffusion: " + describe_defaults(job.diffusion));
  out.model = load_model(m, job.super_res, s.model_path, device, is_karras(job.diffusion));
  if (!s.classifier_path.empty()) {
    logger.log("loading classifier " + s.classifier_path + "...");
    out.classifier =
        load_classifier(job.classifier, m.image_size, m.image_channels, s.classifier_path, device);
  }
  return out;
}

SamplingPlan prepare_sampling(const SampleJob& job, SamplerSetup setup, c10::Device device,
                              Logger& logger) {
  // The low-resolution images are read before the (slow) model load: a bad file fails at once.
  BaseSamples base;
  if (job.super_res) base = read_base_samples(job.sample.base_samples, job.model);
  return plan_sampling(job, std::move(setup), load_sampling_models(job, device, logger), device,
                       logger, &base);
}

SamplingPlan plan_sampling(const SampleJob& job, SamplerSetup setup, const SamplingModels& models,
                           c10::Device device, Logger& logger, BaseSamples* base) {
  const SampleConfig& s = job.sample;
  const ModelConfig& m = job.model;
  SamplingPlan p;
  p.job = job;
  p.device = device;
  const std::vector<std::string> names = read_class_names(s.model_path);
  p.classes = parse_classes(s.classes, names);
  // A model trained on fewer classes than its embedding has rows: labels among those.
  if (m.class_cond && !names.empty())
    p.num_classes = std::min<int64_t>(p.num_classes, static_cast<int64_t>(names.size()));
  p.classifier_guided = !s.classifier_path.empty();
  p.free_guided = s.guidance_scale != 1.0;
  p.size = job.super_res ? m.large_size : m.image_size;
  p.channels = m.image_channels;
  if (job.super_res) p.base = base ? std::move(*base) : read_base_samples(s.base_samples, m);
  p.with_labels = job.super_res ? p.base.labels.defined() : m.class_cond || p.classifier_guided;
  p.model = models.model;
  p.classifier = models.classifier;
  if (p.classifier)
    p.num_classes = std::min(p.num_classes, p.classifier->options().unet.out_channels);
  for (int64_t c : p.classes) {
    IDIFF_REQUIRE(c < p.num_classes, ConfigError, "`class`: ", c, " is not a class of ",
                  p.classifier ? s.classifier_path : s.model_path, " (0..", p.num_classes - 1, ")");
  }
  p.first_level = noise_schedule_of(setup).level(setup.schedule.levels.front());
  if (!s.init_image.empty()) p.init = read_init_image(s.init_image, p.size, p.channels);
  if (!s.initial_noise.empty()) {
    p.noise = read_initial_noise(s.initial_noise, s.num_samples, p.channels, p.size);
  }
  EditTask task;
  if (!s.edit_task.empty()) {
    const at::Tensor image = read_init_image(s.edit_image, p.size, p.channels).to(device);
    const at::Tensor mask = s.edit_mask.empty() ? at::Tensor() : read_mask(s.edit_mask, p.size);
    task = make_edit_task(s.edit_task, image, mask.defined() ? mask.to(device) : mask);
    // A consistency model's x_0 takes the known part (karras_edit.h); RePaint puts it back
    // into each step's sample instead (repaint.h).
    if (!setup.repaint) setup.denoiser.replace_fn = task.replace;
    p.edit_known = task.known.cpu();
    if (!logger.dir().empty()) {
      const std::string known = logger.dir() + "/edit_input.png";
      write_png(known, samples_to_uint8(p.edit_known)[0]);
      logger.log(str(s.edit_task, ": what is kept of ", s.edit_image, " is in ", known));
    }
  }
  // The solver is made once, over the batch's model and cond_fn (sample_batch sets them).
  const std::shared_ptr<BatchModel> current = p.current;
  if (p.classifier_guided) {
    setup.denoiser.cond_fn = [current](const at::Tensor& x, const at::Tensor& t) {
      return current->cond(x, t);
    };
  }
  p.setup = std::move(setup);
  p.solver = make_solver(
      p.setup, [current](const at::Tensor& x, const at::Tensor& t) { return current->fn(x, t); });
  if (p.setup.repaint) {
    p.solver = make_repaint_solver(std::move(p.solver), noise_schedule_of(p.setup), std::move(task),
                                   *p.setup.repaint);
  }
  // The classifier's gradient is computed eagerly (autograd is not captured). A failed
  // CUDA-graph capture is an error naming --cuda_graph False, not a silent fallback: the
  // CUDA allocator may be left in its capture state.
  p.loop.cuda_graph = s.cuda_graph && !p.classifier_guided;
  return p;
}

std::vector<std::string> describe_sampling(const SamplingPlan& p, int64_t world_size) {
  const SampleConfig& s = p.job.sample;
  std::vector<std::string> lines = {
      str("sampling ", s.num_samples, " images with ", describe(*p.solver, p.setup),
          p.init.defined() ? str(", from ", s.init_image, " noised to t=", p.first_level.t) : "",
          world_size > 1 ? str(" on ", world_size, " ranks") : "", "...")};
  if (!p.setup.defaults_note.empty()) lines.push_back(p.setup.defaults_note);
  if (p.classifier_guided) {
    lines.push_back(
        str("classifier guidance: ", s.classifier_path, ", scale ", s.classifier_scale));
  }
  if (p.free_guided) lines.push_back(str("classifier-free guidance: scale ", s.guidance_scale));
  return lines;
}

namespace {

// samples.json: what a person needs to know, and to repeat the run — the checkpoint, the
// seed, the sampler and its steps, every model and diffusion flag, the time, the files.
void write_sample_record(const SamplingPlan& plan, const SampleResult& r, int64_t world_size,
                         const std::string& path) {
  const SampleConfig& s = plan.job.sample;
  nlohmann::json flags = nlohmann::json::object();
  for (const auto& [name, value] : model_and_diffusion_settings(plan.job.model, plan.job.diffusion))
    flags[name.substr(1, name.size() - 2)] = value;
  const std::time_t now = std::time(nullptr);
  char time[32];
  std::strftime(time, sizeof(time), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::json j = {{"written_by", "idiff sample"},
                      {"time", time},
                      {"model_path", s.model_path},
                      {"seed", s.seed},
                      {"num_samples", s.num_samples},
                      {"batch_size", s.batch_size},
                      {"ranks", world_size},
                      {"sampler", plan.setup.solver.name},
                      {"steps", plan.solver->num_steps()},
                      {"model_calls_per_image", plan.solver->total_model_calls()},
                      {"schedule", plan.setup.schedule_name},
                      {"clip_denoised", s.clip_denoised},
                      {"classes", s.classes},
                      {"sampling", describe_sampling(plan, world_size)},
                      {"flags", flags},
                      {"npz", r.npz_path},
                      {"grid", r.grid_path},
                      {"partial", !r.stopped.empty()},
                      {"samples_written", r.images.size(0)}};
  if (!r.stopped.empty()) j["stopped_by"] = r.stopped;
  write_bytes_atomically(path, j.dump(2) + "\n");
}

}  // namespace

void write_samples(const SamplingPlan& plan, SampleResult& r, const at::Tensor& floats,
                   int64_t world_size, Logger& logger) {
  const SampleConfig& s = plan.job.sample;
  r.npz_path = logger.dir() + "/" + shape_name(r.images);
  TensorMap arrays;
  arrays.insert("arr_0", r.images);
  if (r.labels.defined()) arrays.insert("arr_1", r.labels);
  write_npz(r.npz_path, arrays);
  logger.log("saving to " + r.npz_path);
  if (s.save_float) {
    TensorMap f;
    f.insert("samples", floats);
    const std::string path = logger.dir() + "/samples_float.safetensors";
    save_tensor_file(path, f);
    logger.log("float samples (before 8-bit rounding): " + path);
  }
  const int64_t shown = std::min(s.grid_size, r.images.size(0));
  if (shown > 0) {
    r.grid_path = logger.dir() + "/samples_grid.png";
    write_png(r.grid_path, make_grid(r.images.narrow(0, 0, shown)));
    logger.log("grid of " + std::to_string(shown) + " samples: " + r.grid_path);
  }
  if (s.save_pngs) {
    // Written under a staging name and moved into samples/ when all are there: a run
    // killed while writing never leaves a partial set for `idiff eval --samples` to score.
    const std::string dir = logger.dir() + "/samples";
    const std::string staging = str(dir, ".partial-seed", s.seed);
    make_directories(staging);
    for (int64_t i = 0; i < r.images.size(0); ++i) {
      // The seed and the sample's index in the run: files of two runs never collide.
      char name[64];
      std::snprintf(name, sizeof(name), "/seed%llu_%06lld.png",
                    static_cast<unsigned long long>(s.seed), static_cast<long long>(i));
      write_png(staging + name, r.images[i]);
    }
    publish_folder(staging, dir);
    logger.log("one PNG per sample in " + dir + " (seed" + std::to_string(s.seed) + "_NNNNNN.png)");
  }
  const std::string record = logger.dir() + "/samples.json";
  write_sample_record(plan, r, world_size, record);
  logger.log("what made them (model, flags, sampler, seed): " + record);
}

}  // namespace idiff
