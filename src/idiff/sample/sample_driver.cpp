#include "idiff/sample/sample_driver.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/progress.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/common/strings.h"
#include "idiff/data/image_datasets.h"
#include "idiff/data/image_resize.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/dist/dist_context.h"
#include "idiff/dist/rank_agreement.h"
#include "idiff/io/image_grid.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/infer_config.h"
#include "idiff/model/state_dict.h"
#include "idiff/sample/sampler_setup.h"
#include "idiff/train/logger.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <sys/stat.h>
#include <algorithm>
#include <cstdio>

namespace idiff {
namespace {

void check_sample_config(const SampleConfig& s) {
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError, "--model_path is required (a model or EMA checkpoint)");
  IDIFF_REQUIRE(s.num_samples >= 1, ConfigError, "--num_samples must be at least 1, got ", s.num_samples);
  IDIFF_REQUIRE(s.batch_size >= 1, ConfigError, "--batch_size must be at least 1, got ", s.batch_size);
  IDIFF_REQUIRE(s.eta >= 0, ConfigError, "--eta must be non-negative, got ", s.eta);
  IDIFF_REQUIRE(s.grid_size >= 0, ConfigError, "--grid_size must be non-negative, got ", s.grid_size);
}

std::string shape_name(const at::Tensor& nhwc) {
  return str("samples_", nhwc.size(0), "x", nhwc.size(1), "x", nhwc.size(2), "x", nhwc.size(3), ".npz");
}

// The low-resolution images (and labels) of a samples file, as --base_samples holds them.
struct BaseSamples {
  at::Tensor images;  // [N, 3, h, w] float in [-1, 1]
  at::Tensor labels;  // [N] int64 or undefined
};

BaseSamples read_base_samples(const std::string& path, const ModelConfig& m) {
  IDIFF_REQUIRE(!path.empty(), ConfigError,
                "--base_samples is required: a samples_*.npz written by `idiff sample`");
  const TensorMap arrays = read_npz(path);
  IDIFF_REQUIRE(arrays.contains("arr_0"), FileError, path, ": no arr_0 (expected the images of a samples file)");
  const at::Tensor& a = arrays.at("arr_0");
  IDIFF_REQUIRE(a.dim() == 4 && a.size(3) == 3 && a.scalar_type() == at::kByte && a.size(0) > 0, FileError,
                path, ": arr_0 must be uint8 images [N, H, W, 3], got ", a.scalar_type(), " ", a.sizes());
  IDIFF_REQUIRE(a.size(1) == m.small_size && a.size(2) == m.small_size, FileError, path, ": images are ",
                a.size(1), "x", a.size(2), " but --small_size is ", m.small_size);
  BaseSamples b;
  b.images = a.to(at::kFloat).div(127.5).sub(1.0).permute({0, 3, 1, 2}).contiguous();
  if (m.class_cond) {
    IDIFF_REQUIRE(arrays.contains("arr_1"), FileError, path,
                  ": no arr_1 (labels), needed by a class-conditional model");
    const at::Tensor& l = arrays.at("arr_1");
    IDIFF_REQUIRE(l.dim() == 1 && l.size(0) == a.size(0), FileError, path, ": arr_1 must hold ", a.size(0),
                  " labels, got ", l.sizes());
    IDIFF_REQUIRE(c10::isIntegralType(l.scalar_type(), /*includeBool=*/false), FileError, path,
                  ": arr_1 (labels) must hold integers, got ", c10::toString(l.scalar_type()));
    b.labels = l.to(at::kLong);
    IDIFF_REQUIRE(b.labels.min().item<int64_t>() >= 0 && b.labels.max().item<int64_t>() < kNumClasses,
                  FileError, path, ": labels must lie in [0, ", kNumClasses, ")");
  }
  return b;
}

// --init_image: one image, resized as training data is, [1, 3, size, size] in [-1, 1].
at::Tensor read_init_image(const std::string& path, int64_t size) {
  const Image8 rgb = reference_resize(decode_image_file(path), static_cast<int>(size));
  at::Tensor out = at::empty({1, 3, size, size}, at::kFloat);
  rgb_to_chw_float(rgb, out.data_ptr<float>());
  return out;
}

// Full precision, as numpy prints a float64 (the reference logs np.mean(...)).
std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// The ranks to share the work with: `given`, else those the launcher's variables describe
// (a single process without them), on the device --device names for this local rank.
struct Ranks {
  std::unique_ptr<DistContext> owned;
  DistContext* ctx = nullptr;
};

Ranks join_ranks(DistContext* given, const SampleConfig& s) {
  Ranks r;
  if (given == nullptr) {
    r.owned =
        DistContext::from_environment(DistContext::device_for_local_rank(s.device), s.dist_timeout);
    given = r.owned.get();
  }
  r.ctx = given;
  return r;
}

// The seed of rank r's noise generator: --seed itself on rank 0, so one process draws what
// it always drew; a different stream on every other rank.
uint64_t rank_seed(uint64_t seed, int64_t rank) {
  return seed + static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
}

void make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw FileError(str(dir, ": cannot create the directory (", std::strerror(errno), ")"));
  }
}

}  // namespace

UNetModel load_model(const ModelConfig& config, bool super_res, const std::string& path,
                     c10::Device device) {
  UNetModel model = super_res ? sr_create_model(config) : create_model(config);
  const TensorMap sd = load_tensor_file(path);
  try {
    load_state_dict(*model, sd, path);
  } catch (const FileError& e) {
    std::string hint;
    try {
      const InferredModel inferred = infer_model_config(sd);
      if (inferred.is_unet) hint = inferred.flags;
    } catch (const Error&) {
    }
    throw FileError(str(e.what(), hint.empty() ? "" : "; the checkpoint looks like: " + hint));
  }
  model->to(device);
  model->eval();
  return model;
}

SampleResult run_sampling(const SampleJob& job, DistContext* dist) {
  const SampleConfig& s = job.sample;
  check_sample_config(s);
  const ModelConfig& m = job.model;
  const std::vector<int64_t> classes = parse_int_list(s.classes, "--class");
  IDIFF_REQUIRE(classes.empty() || m.class_cond, ConfigError, "--class ", s.classes,
                " needs a class-conditional model (--class_cond True)");
  for (int64_t c : classes) {
    IDIFF_REQUIRE(c >= 0 && c < kNumClasses, ConfigError, "--class: ", c,
                  " is not a class of the model (0..", kNumClasses - 1, ")");
  }
  const Ranks ranks = join_ranks(dist, s);
  DistContext& ctx = *ranks.ctx;
  RankSettings settings = model_and_diffusion_settings(m, job.diffusion);
  settings.push_back({"--num_samples", str(s.num_samples)});
  settings.push_back({"--batch_size", str(s.batch_size)});
  check_ranks_agree(ctx, settings);  // before the first collective
  const c10::Device device = ctx.device();
  // Allocator reuse on the CPU; not cuDNN autotuning, whose choice of algorithm may differ
  // between runs, and a seed gives the same samples on a device.
  if (device.is_cpu()) tune_for_device(device);
  const int64_t rank = ctx.rank(), world = ctx.world_size();
  // Only rank 0 writes the log and the outputs.
  Logger logger(ctx.is_main() ? Logger::choose_dir(s.log_dir) : "", !ctx.is_main());
  logger.log("Logging to " + logger.dir());
  logger.log("device: " + describe_device(device));
  if (ctx.is_distributed()) logger.log("distributed: " + ctx.describe());

  BaseSamples base;
  if (job.super_res) base = read_base_samples(s.base_samples, m);
  logger.log("loading " + s.model_path + "...");
  UNetModel model = load_model(m, job.super_res, s.model_path, device);
  const SamplerSetup setup = sampler_setup(s, job.diffusion);
  const NoiseLevel first_level =
      noise_schedule_of(setup.params).level(setup.schedule.levels.front());
  const int64_t size = job.super_res ? m.large_size : m.image_size;
  const at::Tensor init = s.init_image.empty() ? at::Tensor() : read_init_image(s.init_image, size);

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
                      given_noise.size(1) == 3 && given_noise.size(2) == size &&
                      given_noise.size(3) == size,
                  FileError, s.initial_noise, ": expected x_T of shape [", s.num_samples, ", 3, ",
                  size, ", ", size, "] (--num_samples images), got ", given_noise.sizes());
  }
  // Rounds as the reference's: each rank samples up to --batch_size images per round and
  // all of them are gathered in rank order, so sample i of the output is global index i
  // (round, then rank, then position). The last round is cut to exactly --num_samples.
  const bool with_labels = job.super_res ? base.labels.defined() : m.class_cond;
  const int64_t per_round = s.batch_size * world;
  const int64_t rounds = (s.num_samples + per_round - 1) / per_round;
  std::vector<at::Tensor> images, labels, floats;
  LoopOptions loop;
  loop.cuda_graph = s.cuda_graph;
  ProgressBar bar("sampling", setup.schedule.num_steps(),
                  ctx.is_main() && ProgressBar::stderr_is_terminal());
  {
    const auto probe = make_solver(setup, [](const at::Tensor& x, const at::Tensor&) { return x; });
    logger.log(
        str("sampling ", s.num_samples, " images with ", describe(*probe, setup),
            init.defined() ? str(", from ", s.init_image, " noised to t=", first_level.t) : "",
            world > 1 ? str(" on ", world, " ranks") : "", "..."));
  }
  for (int64_t round = 0; round < rounds; ++round) {
    // Global index of this rank's first sample of the round, and how many it makes.
    const int64_t start = round * per_round + rank * s.batch_size;
    const int64_t n = std::clamp<int64_t>(s.num_samples - start, 0, s.batch_size);
    at::Tensor x8 = at::empty({0, size, size, 3}, at::kByte), y = at::empty({0}, at::kLong);
    at::Tensor xf = at::empty({0, 3, size, size}, at::kFloat);
    if (n > 0) {
      ModelKwargs kw;
      if (job.super_res) {
        std::vector<int64_t> idx;
        for (int64_t i = 0; i < n; ++i) idx.push_back((start + i) % base.images.size(0));
        const at::Tensor index = at::tensor(idx, at::kLong);
        kw.low_res = base.images.index_select(0, index).to(device);
        if (base.labels.defined()) kw.y = base.labels.index_select(0, index).to(device);
      } else if (m.class_cond) {
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
      c10::InferenceMode inference;
      ModelFn fn = [&model, &kw](const at::Tensor& x, const at::Tensor& t) {
        return model->forward_kwargs(x, t, kw);
      };
      SampleOptions opts;
      opts.clip_denoised = s.clip_denoised;
      opts.generator = gen;
      opts.device = device;
      if (given_noise.defined()) opts.noise = given_noise.narrow(0, start, n).to(device);
      bar.set_label(str("batch ", round + 1, "/", rounds));
      opts.progress = [&bar](const SampleStep& step) { bar.update(step.index + 1); };
      const std::vector<int64_t> shape = {n, 3, size, size};
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
      if (kw.y.defined()) y = kw.y.cpu();
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
      make_dir(dir);
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

NllResult run_nll(const SampleJob& job, DistContext* dist) {
  const SampleConfig& s = job.sample;
  IDIFF_REQUIRE(!s.model_path.empty(), ConfigError, "--model_path is required");
  IDIFF_REQUIRE(!s.data_dir.empty(), ConfigError, "--data_dir is required (the images to evaluate)");
  IDIFF_REQUIRE(s.num_samples >= 1, ConfigError, "--num_samples must be at least 1, got ", s.num_samples);
  IDIFF_REQUIRE(s.batch_size >= 1, ConfigError, "--batch_size must be at least 1, got ", s.batch_size);
  const Ranks ranks = join_ranks(dist, s);
  DistContext& ctx = *ranks.ctx;
  RankSettings settings = model_and_diffusion_settings(job.model, job.diffusion);
  settings.push_back({"--num_samples", str(s.num_samples)});
  settings.push_back({"--batch_size", str(s.batch_size)});
  check_ranks_agree(ctx, settings);  // before the first collective
  const c10::Device device = ctx.device();
  // Allocator reuse on the CPU; not cuDNN autotuning, whose choice of algorithm may differ
  // between runs, and a seed gives the same samples on a device.
  if (device.is_cpu()) tune_for_device(device);
  Logger logger(ctx.is_main() ? Logger::choose_dir(s.log_dir) : "", !ctx.is_main());
  logger.log("Logging to " + logger.dir());
  if (ctx.is_distributed()) logger.log("distributed: " + ctx.describe());
  UNetModel model = load_model(job.model, false, s.model_path, device);
  const GaussianDiffusion diffusion = create_gaussian_diffusion(job.diffusion);

  DataConfig dc;
  dc.data_dir = s.data_dir;
  dc.batch_size = s.batch_size;
  dc.image_size = job.model.image_size;
  dc.class_cond = job.model.class_cond;
  dc.deterministic = true;
  dc.num_workers = s.num_workers;
  dc.max_image_pixels = s.max_image_pixels;
  dc.seed = s.seed;
  dc.rank = ctx.rank();  // each rank evaluates its shard, items [rank::world_size]
  dc.world_size = ctx.world_size();
  auto loader = load_data(dc);
  logger.log(loader->dataset().summary());

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(rank_seed(s.seed, ctx.rank()));
  std::vector<double> batch_bpd;
  at::Tensor vb_sum, mse_sum, xmse_sum;
  int64_t done = 0, batches = 0;
  ProgressBar bar("nll", diffusion.num_timesteps(),
                  ctx.is_main() && ProgressBar::stderr_is_terminal());
  while (done < s.num_samples) {
    Batch b = loader->next();
    ModelKwargs kw;
    if (job.model.class_cond) kw.y = b.labels.to(device);
    c10::InferenceMode inference;
    ModelFn fn = [&model, &kw](const at::Tensor& x, const at::Tensor& t) {
      return model->forward_kwargs(x, t, kw);
    };
    const BpdResult r = diffusion.calc_bpd_loop(fn, b.images.to(device), s.clip_denoised, gen);
    // This batch's means [bpd, vb [T], mse [T], xstart_mse [T]], averaged over the ranks as
    // the reference does (every rank's batch has --batch_size images).
    const int64_t T = r.vb.size(1);
    at::Tensor metrics =
        at::cat({at::full({1}, r.total_bpd.mean().item<double>(), at::kDouble),
                 r.vb.mean(0).to(at::kDouble).cpu(), r.mse.mean(0).to(at::kDouble).cpu(),
                 r.xstart_mse.mean(0).to(at::kDouble).cpu()});
    if (ctx.is_distributed())
      metrics = ctx.all_reduce_sum(metrics) / static_cast<double>(ctx.world_size());
    const at::Tensor vb = metrics.narrow(0, 1, T), mse = metrics.narrow(0, 1 + T, T),
                     xmse = metrics.narrow(0, 1 + 2 * T, T);
    vb_sum = vb_sum.defined() ? vb_sum + vb : vb;
    mse_sum = mse_sum.defined() ? mse_sum + mse : mse;
    xmse_sum = xmse_sum.defined() ? xmse_sum + xmse : xmse;
    batch_bpd.push_back(metrics[0].item<double>());
    done += b.images.size(0) * ctx.world_size();
    ++batches;
    double mean = 0;
    for (double v : batch_bpd) mean += v;
    mean /= static_cast<double>(batch_bpd.size());
    logger.log(str("done ", done, " samples: bpd=", format_double(mean)));
  }
  NllResult out;
  for (double v : batch_bpd) out.bpd += v;
  out.bpd /= static_cast<double>(batch_bpd.size());
  out.num_images = done;
  out.vb = (vb_sum / batches).to(at::kFloat);
  out.mse = (mse_sum / batches).to(at::kFloat);
  out.xstart_mse = (xmse_sum / batches).to(at::kFloat);
  out.dir = logger.dir();
  for (const auto& [name, terms] : {std::pair<std::string, at::Tensor>{"vb", out.vb},
                                    {"mse", out.mse},
                                    {"xstart_mse", out.xstart_mse}}) {
    if (!ctx.is_main()) break;
    TensorMap arrays;
    arrays.insert("arr_0", terms);
    const std::string path = logger.dir() + "/" + name + "_terms.npz";
    logger.log("saving " + name + " terms to " + path);
    write_npz(path, arrays);
  }
  ctx.barrier();
  logger.log(str("bits/dim over ", done, " images: ", format_double(out.bpd)));
  logger.log("evaluation complete");
  return out;
}

}  // namespace idiff
