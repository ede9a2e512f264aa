#include "bench_workloads.h"

#include "peak_memory.h"

#include "idiff/common/autocast.h"
#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/flop_count.h"
#include "idiff/train/ema.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <chrono>
#include <ctime>

namespace idiff::bench {
namespace {

void sync(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
}

// Wall time, or the CPU time of the whole process (all its threads), in seconds.
double clock_seconds(bool cpu) {
  if (!cpu) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

Case Case::parse(const std::string& spec) {
  const std::vector<std::string> parts = split(spec, ':');
  IDIFF_REQUIRE(parts.size() >= 3 && parts.size() <= 5, ConfigError, "--case '", spec,
                "': expected config:what:batch[:fp32|bf16][:ckpt]");
  Case c;
  c.config = parts[0];
  c.what = parts[1];
  const auto batch = parse_int_list(parts[2], "--case batch");
  IDIFF_REQUIRE(batch.size() == 1, ConfigError, "--case '", spec, "': one batch size expected");
  c.batch = batch[0];
  if (parts.size() >= 4) c.precision = parts[3];
  if (parts.size() == 5) {
    IDIFF_REQUIRE(parts[4] == "ckpt", ConfigError, "--case '", spec,
                  "': the fifth field can only be ckpt");
    c.use_checkpoint = true;
  }
  bool known = false;
  for (const auto& n : config_names()) known |= n == c.config;
  IDIFF_REQUIRE(known, ConfigError, "--case '", spec, "': unknown config '", c.config,
                "' (tiny, cifar10, imagenet64)");
  IDIFF_REQUIRE(c.what == "train" || c.what == "sample" || c.what == "ddim", ConfigError,
                "--case '", spec, "': the work must be train, sample or ddim");
  IDIFF_REQUIRE(c.batch >= 1, ConfigError, "--case '", spec, "': the batch must be positive");
  IDIFF_REQUIRE(c.precision == "fp32" || c.precision == "bf16", ConfigError, "--case '", spec,
                "': precision fp32 or bf16");
  return c;
}

std::string Case::spec() const {
  return config + ":" + what + ":" + std::to_string(batch) + ":" + precision +
         (use_checkpoint ? ":ckpt" : "");
}

const std::vector<std::string>& config_names() {
  static const std::vector<std::string> names = {"tiny", "cifar10", "imagenet64"};
  return names;
}

ModelConfig model_config(const std::string& name, bool use_checkpoint) {
  ModelConfig m;  // the reference's model_and_diffusion_defaults()
  m.learn_sigma = true;
  m.use_checkpoint = use_checkpoint;
  if (name == "tiny") {  // the unet_tiny fixture
    m.image_size = 32;
    m.num_channels = 32;
    m.num_res_blocks = 1;
  } else if (name == "cifar10") {
    m.image_size = 32;
    m.num_channels = 128;
    m.num_res_blocks = 3;
    m.dropout = 0.3;
  } else {  // imagenet64
    m.image_size = 64;
    m.num_channels = 128;
    m.num_res_blocks = 3;
  }
  return m;
}

DiffusionConfig diffusion_config(const std::string& name) {
  DiffusionConfig d;
  d.learn_sigma = true;
  d.noise_schedule = "cosine";
  d.diffusion_steps = name == "tiny" ? 1000 : 4000;
  return d;
}

IdiffRunner::Entry& IdiffRunner::entry(const Case& c) {
  const std::string key = c.config + (c.use_checkpoint ? ":ckpt" : "");
  auto it = entries_.find(key);
  if (it != entries_.end()) return it->second;
  Entry e;
  e.model = create_model(model_config(c.config, c.use_checkpoint));
  e.model->to(settings_.device);
  e.model->set_attention_impl(settings_.attention);
  {
    at::NoGradGuard no_grad;
    // Layers the reference initialises to zero get small noise: never time products of zeros.
    for (auto& p : e.model->parameters()) {
      if (!p.any().item<bool>()) p.normal_(0, 0.01);
    }
    if (settings_.channels_last) {
      for (auto& p : e.model->parameters()) {
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
      }
    }
  }
  e.params = e.model->parameters();
  e.diffusion =
      std::make_unique<SpacedDiffusion>(create_gaussian_diffusion(diffusion_config(c.config)));
  return entries_.emplace(key, std::move(e)).first->second;
}

Measurement IdiffRunner::run(const Case& c) {
  IDIFF_REQUIRE(c.precision == "fp32" || settings_.device.is_cuda(), ConfigError, "--case ",
                c.spec(), ": bf16 autocast runs on CUDA only");
  Entry& e = entry(c);
  return c.what == "train" ? train(c, e) : sample(c, e);
}

Measurement IdiffRunner::train(const Case& c, Entry& e) {
  const c10::Device dev = settings_.device;
  const int64_t size = model_config(c.config, false).image_size;
  e.model->train();
  if (!e.opt) {
    AdamWOptions o;
    o.lr = 1e-4;
    o.impl = settings_.adamw;
    e.opt = std::make_unique<AdamW>(e.params, o);
    e.ema = clone_tensors(e.params);
  }
  const bool bf16 = c.precision == "bf16";
  UniformSampler sampler(*e.diffusion);
  at::Tensor x = at::randn({c.batch, 3, size, size}, at::TensorOptions().device(dev));
  if (settings_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  UNetModel model = e.model;
  const ModelFn fn = [&model](const at::Tensor& xt, const at::Tensor& t) {
    return model->forward(xt, t);
  };
  auto step = [&] {
    e.opt->zero_grad();
    auto [t, w] = sampler.sample(c.batch, dev);
    LossTerms losses;
    {
      AutocastGuard autocast(dev.type(), bf16);
      losses = e.diffusion->training_losses(fn, x, t);
    }
    (losses.at("loss") * w).mean().backward();
    e.opt->step();
    update_ema(e.ema, e.params, 0.9999);
  };
  PeakMemory memory(dev);
  for (int64_t i = 0; i < settings_.warmup; ++i) step();
  sync(dev);
  const double start = clock_seconds(settings_.cpu_clock);
  for (int64_t i = 0; i < settings_.steps; ++i) step();
  sync(dev);
  Measurement m;
  m.seconds = clock_seconds(settings_.cpu_clock) - start;
  m.images_per_sec = static_cast<double>(settings_.steps * c.batch) / m.seconds;
  m.flops =
      training_step_flops(*e.model, size, size, c.batch) * static_cast<double>(settings_.steps);
  m.peak_bytes = memory.peak_bytes();
  return m;
}

Measurement IdiffRunner::sample(const Case& c, Entry& e) {
  const c10::Device dev = settings_.device;
  const int64_t size = model_config(c.config, false).image_size;
  DiffusionConfig dc = diffusion_config(c.config);
  dc.timestep_respacing = c.what == "sample" ? std::to_string(settings_.sample_steps)
                                             : "ddim" + std::to_string(settings_.ddim_steps);
  const SpacedDiffusion diffusion = create_gaussian_diffusion(dc);
  e.model->eval();
  UNetModel model = e.model;
  const ModelFn fn = [&model](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t);
  };
  SampleOptions so;
  so.device = dev;
  so.clip_denoised = true;
  if (settings_.channels_last) {
    so.noise = at::randn({c.batch, 3, size, size}, at::TensorOptions().device(dev))
                   .contiguous(at::MemoryFormat::ChannelsLast);
  }
  LoopOptions loop;
  loop.cuda_graph = settings_.cuda_graph;
  const std::vector<int64_t> shape = {c.batch, 3, size, size};
  PeakMemory memory(dev);
  Measurement m;
  {
    c10::InferenceMode inference;
    AutocastGuard autocast(dev.type(), c.precision == "bf16");
    // One model call first: one-time set-up (kernels, primitives) is not timed.
    model->forward(at::randn(shape, at::TensorOptions().device(dev)),
                   at::zeros({c.batch}, at::TensorOptions().dtype(at::kLong).device(dev)));
    sync(dev);
    const double start = clock_seconds(settings_.cpu_clock);
    if (c.what == "sample") {
      p_sample_loop(diffusion, fn, shape, so, {}, loop);
    } else {
      ddim_sample_loop(diffusion, fn, shape, so, 0.0, {}, loop);
    }
    sync(dev);
    m.seconds = clock_seconds(settings_.cpu_clock) - start;
  }
  m.images_per_sec = static_cast<double>(c.batch) / m.seconds;
  m.flops = count_forward_flops(*e.model, size, size).total() * static_cast<double>(c.batch) *
            static_cast<double>(diffusion.num_timesteps());
  m.peak_bytes = memory.peak_bytes();
  return m;
}

}  // namespace idiff::bench
