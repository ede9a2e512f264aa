#include "idiff/drivers/image_sample.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/logger.h"
#include "idiff/common/progress.h"
#include "idiff/common/strings.h"
#include "idiff/data/data_loader.h"
#include "idiff/data/image_datasets.h"
#include "idiff/data/image_resize.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/guidance.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/ranks.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/drivers/super_res.h"
#include "idiff/io/image_grid.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstdio>

namespace idiff {
namespace {

void check_sample_config(const SampleConfig& s) {
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError,
                "`model_path` is required (a model or EMA checkpoint)");
  IDIFF_REQUIRE(s.num_samples >= 1, ConfigError, "`num_samples` must be at least 1, got ",
                s.num_samples);
  IDIFF_REQUIRE(s.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                s.batch_size);
  IDIFF_REQUIRE(s.eta >= 0, ConfigError, "`eta` must be non-negative, got ", s.eta);
  IDIFF_REQUIRE(s.grid_size >= 0, ConfigError, "`grid_size` must be non-negative, got ",
                s.grid_size);
}

std::string shape_name(const at::Tensor& nhwc) {
  return str("samples_", nhwc.size(0), "x", nhwc.size(1), "x", nhwc.size(2), "x", nhwc.size(3),
             ".npz");
}

// --init_image: one image, resized as training data is, [1, C, size, size] in [-1, 1].
at::Tensor read_init_image(const std::string& path, int64_t size, int64_t channels) {
  const Image8 rgb = reference_resize(decode_image_file(path), static_cast<int>(size));
  at::Tensor out = at::empty({1, 3, size, size}, at::kFloat);
  rgb_to_chw_float(rgb, out.data_ptr<float>());
  return channels == 1 ? rgb_to_grey(out) : out;
}

}  // namespace

SampleResult run_sampling(const SampleJob& job, DistContext* dist) {
  const SampleConfig& s = job.sample;
  check_sample_config(s);
  const ModelConfig& m = job.model;
  const std::vector<int64_t> classes = parse_int_list(s.classes, "`class`");
  const bool classifier_guided = !s.classifier_path.empty();
  const bool free_guided = s.guidance_scale != 1.0;
  IDIFF_REQUIRE(classes.empty() || m.class_cond || classifier_guided, ConfigError, "`class` ",
                s.classes,
                " needs a class-conditional model (`class_cond` True) or a classifier "
                "(`classifier_path`)");
  IDIFF_REQUIRE(classifier_guided || s.classifier_scale == 1.0, ConfigError,
                "`classifier_scale` needs a classifier (`classifier_path`)");
  IDIFF_REQUIRE(
      !free_guided || (m.class_cond && m.class_dropout_prob > 0), ConfigError,
      "`guidance_scale` (classifier-free guidance) needs a class-conditional model "
      "trained with a null label (`class_cond` True, `class_dropout_prob` > 0)",
      m.class_cond ? "" : "; an unconditional model is guided by a classifier (`classifier_path`)");
  IDIFF_REQUIRE(!(classifier_guided && job.super_res), ConfigError,
                "`classifier_path`: classifier guidance is for `idiff sample`");
  for (int64_t c : classes) {
    IDIFF_REQUIRE(c >= 0 && c < kNumClasses, ConfigError, "`class`: ", c,
                  " is not a class of the model (0..", kNumClasses - 1, ")");
  }
  const Ranks ranks = join_sampling_ranks(dist, m, job.diffusion, s);
  DistContext& ctx = *ranks.ctx;
  const c10::Device device = ctx.device();
  const int64_t rank = ctx.rank(), world = ctx.world_size();
  // Only rank 0 writes the log and the outputs.
  Logger logger(ctx.is_main() ? Logger::choose_dir(s.log_dir) : "", !ctx.is_main());
  logger.log("Logging to " + logger.dir());
  logger.log("device: " + describe_device(device));
  if (ctx.is_distributed()) logger.log("distributed: " + ctx.describe());

  BaseSamples base;
  if (job.super_res) base = read_base_samples(s.base_samples, m);
  logger.log("loading " + s.model_path + "...");
  logger.log("diffusion: " + describe_defaults(job.diffusion));
  UNetModel model = load_model(m, job.super_res, s.model_path, device);
  EncoderUNetModel classifier{nullptr};
  if (classifier_guided) {
    logger.log("loading classifier " + s.classifier_path + "...");
    classifier =
        load_classifier(job.classifier, m.image_size, m.image_channels, s.classifier_path, device);
  }
  SamplerSetup setup = sampler_setup(s, job.diffusion);
  const NoiseLevel first_level =
      noise_schedule_of(setup.params).level(setup.schedule.levels.front());
  const int64_t size = job.super_res ? m.large_size : m.image_size;
  const int64_t C = m.image_channels;
  const at::Tensor init =
      s.init_image.empty() ? at::Tensor() : read_init_image(s.init_image, size, C);

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(rank_seed(s.seed, rank));
  at::Tensor given_noise;
  if (!s.initial_noise.empty()) {
    const TensorMap file = load_tensor_file(s.initial_noise);
    IDIFF_REQUIRE(file.size() >= 1, FileError, s.initial_noise, ": holds no tensor");
    const at::Tensor& x_t = file.entries().front().second;
    IDIFF_REQUIRE(x_t.is_floating_point() && at::isfinite(x_t).all().item<bool>(), FileError,
                  s.initial_noise, ": x_T must hold finite floating-point values (found ",
                  x_t.is_floating_point() ? "NaN or infinity" : c10::toString(x_t.scalar_type()),
                  ")");
    given_noise = x_t.to(at::kFloat);
    IDIFF_REQUIRE(given_noise.dim() == 4 && given_noise.size(0) == s.num_samples &&
                      given_noise.size(1) == C && given_noise.size(2) == size &&
                      given_noise.size(3) == size,
                  FileError, s.initial_noise, ": expected x_T of shape [", s.num_samples, ", ", C,
                  ", ", size, ", ", size, "] (`num_samples` images), got ", given_noise.sizes());
  }
  // Rounds as the reference's: each rank samples up to --batch_size images per round and
  // all of them are gathered in rank order, so sample i of the output is global index i
  // (round, then rank, then position). The last round is cut to exactly --num_samples.
  const bool with_labels =
      job.super_res ? base.labels.defined() : m.class_cond || classifier_guided;
  const int64_t per_round = s.batch_size * world;
  const int64_t rounds = (s.num_samples + per_round - 1) / per_round;
  std::vector<at::Tensor> images, labels, floats;
  LoopOptions loop;
  // The classifier's gradient is computed eagerly (autograd is not captured).
  loop.cuda_graph = s.cuda_graph && !classifier_guided;
  ProgressBar bar("sampling", setup.schedule.num_steps(),
                  ctx.is_main() && ProgressBar::stderr_is_terminal());
  {
    const auto probe = make_solver(setup, [](const at::Tensor& x, const at::Tensor&) { return x; });
    logger.log(
        str("sampling ", s.num_samples, " images with ", describe(*probe, setup),
            init.defined() ? str(", from ", s.init_image, " noised to t=", first_level.t) : "",
            world > 1 ? str(" on ", world, " ranks") : "", "..."));
    if (classifier_guided)
      logger.log(str("classifier guidance: ", s.classifier_path, ", scale ", s.classifier_scale));
    if (free_guided) logger.log(str("classifier-free guidance: scale ", s.guidance_scale));
  }
  for (int64_t round = 0; round < rounds; ++round) {
    // Global index of this rank's first sample of the round, and how many it makes.
    const int64_t start = round * per_round + rank * s.batch_size;
    const int64_t n = std::clamp<int64_t>(s.num_samples - start, 0, s.batch_size);
    at::Tensor x8 = at::empty({0, size, size, C}, at::kByte), y = at::empty({0}, at::kLong);
    at::Tensor xf = at::empty({0, C, size, size}, at::kFloat);
    if (n > 0) {
      ModelKwargs kw;
      if (job.super_res) {
        std::vector<int64_t> idx;
        for (int64_t i = 0; i < n; ++i) idx.push_back((start + i) % base.images.size(0));
        const at::Tensor index = at::tensor(idx, at::kLong);
        kw.low_res = base.images.index_select(0, index).to(device);
        if (base.labels.defined()) kw.y = base.labels.index_select(0, index).to(device);
      } else if (with_labels) {
        if (classes.empty()) {
          kw.y = at::randint(0, kNumClasses, {n}, gen, at::kLong);
        } else {
          // Labels by global sample index, so they do not depend on the number of ranks.
          kw.y = at::empty({n}, at::kLong);
          for (int64_t i = 0; i < n; ++i) {
            kw.y[i] = classes[static_cast<size_t>(start + i) % classes.size()];
          }
        }
        kw.y = kw.y.to(device);
      }
      // The labels for the output; the model sees them when it is class-conditional (an
      // unconditional model guided by a classifier does not).
      const at::Tensor labels = kw.y;
      if (!job.super_res && !m.class_cond) kw.y = at::Tensor();
      c10::InferenceMode inference;
      ModelFn fn = free_guided ? classifier_free_model_fn(model, kw, s.guidance_scale)
                               : [&model, &kw](const at::Tensor& x, const at::Tensor& t) {
                                   return model->forward_kwargs(x, t, kw);
                                 };
      setup.denoiser.cond_fn =
          classifier_guided ? classifier_cond_fn(classifier, labels, s.classifier_scale) : CondFn();
      SampleOptions opts;
      opts.clip_denoised = s.clip_denoised;
      opts.generator = gen;
      opts.device = device;
      if (given_noise.defined()) opts.noise = given_noise.narrow(0, start, n).to(device);
      bar.set_label(str("batch ", round + 1, "/", rounds));
      opts.progress = [&bar](const SampleStep& step) { bar.update(step.index + 1); };
      const std::vector<int64_t> shape = {n, C, size, size};
      // x_T, or with --init_image that image noised to the first level (SDEdit).
      at::Tensor x = initial_noise(shape, opts);
      if (init.defined())
        x = init.to(device).expand_as(x) * first_level.alpha + x * first_level.sigma;
      // A failed CUDA-graph capture is an error naming --cuda_graph False, not a silent
      // fallback: the CUDA allocator may be left in its capture state.
      const auto solver = make_solver(setup, fn);
      x = run_sampler(*solver, x, opts, loop);
      bar.finish();
      IDIFF_REQUIRE(at::isfinite(x).all().item<bool>(), Error, "the samples of batch ", round + 1,
                    " hold NaN or infinity (model ", s.model_path, "); not writing them");
      x8 = samples_to_uint8(x);
      if (s.save_float) xf = x.to(at::kFloat).cpu();
      if (labels.defined()) y = labels.cpu();
    }
    if (ctx.is_distributed()) {
      for (auto& part : ctx.all_gather(x8)) images.push_back(part);
      if (s.save_float) {
        for (auto& part : ctx.all_gather(xf)) floats.push_back(part);
      }
      if (with_labels) {
        for (auto& part : ctx.all_gather(y)) labels.push_back(part);
      }
    } else {
      images.push_back(x8);
      if (s.save_float) floats.push_back(xf);
      if (with_labels) labels.push_back(y);
    }
    logger.log(str("created ", std::min(s.num_samples, (round + 1) * per_round), " samples"));
  }

  SampleResult r;
  r.images = at::cat(images);
  if (!labels.empty()) r.labels = at::cat(labels);
  TORCH_CHECK(r.images.size(0) == s.num_samples, "gathered ", r.images.size(0),
              " samples, expected ", s.num_samples);
  if (ctx.is_main()) {
    r.npz_path = logger.dir() + "/" + shape_name(r.images);
    TensorMap arrays;
    arrays.insert("arr_0", r.images);
    if (r.labels.defined()) arrays.insert("arr_1", r.labels);
    write_npz(r.npz_path, arrays);
    logger.log("saving to " + r.npz_path);
    if (s.save_float) {
      TensorMap f;
      f.insert("samples", at::cat(floats));
      const std::string path = logger.dir() + "/samples_float.safetensors";
      save_tensor_file(path, f);
      logger.log("float samples (before 8-bit rounding): " + path);
    }
    if (s.grid_size > 0) {
      r.grid_path = logger.dir() + "/samples_grid.png";
      write_png(r.grid_path,
                make_grid(r.images.narrow(0, 0, std::min(s.grid_size, r.images.size(0)))));
      logger.log("grid of " + std::to_string(std::min(s.grid_size, r.images.size(0))) +
                 " samples: " + r.grid_path);
    }
    if (s.save_pngs) {
      const std::string dir = logger.dir() + "/samples";
      make_directories(dir);
      for (int64_t i = 0; i < r.images.size(0); ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "/%06lld.png", static_cast<long long>(i));
        write_png(dir + name, r.images[i]);
      }
      logger.log("one PNG per sample in " + dir);
    }
  }
  ctx.barrier();  // every rank returns once the files are written (or fails if rank 0 did)
  logger.log("sampling complete");
  return r;
}

}  // namespace idiff
