// The work idiff_bench times, on idiff's side: a training step (forward, backward, AdamW,
// EMA), ancestral sampling over respaced steps and DDIM, for the configurations of the
// paper that bench/reference_bench.py builds in the reference the same way.
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/respace.h"
#include "idiff/model/unet.h"
#include "idiff/train/adamw.h"

#include <c10/core/Device.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace idiff::bench {

// One row of the table: "cifar10:train:128:bf16:ckpt" (precision and ckpt optional).
struct Case {
  std::string config;  // tiny, cifar10, imagenet64
  std::string what;    // train, sample, ddim
  int64_t batch = 0;
  std::string precision = "fp32";  // fp32 or bf16 (bf16 autocast, CUDA only)
  bool use_checkpoint = false;

  static Case parse(const std::string& spec);
  std::string spec() const;
};

struct Settings {
  c10::Device device{c10::kCPU};
  int64_t steps = 10;  // timed training steps
  int64_t warmup = 2;  // untimed training steps first
  int64_t sample_steps = 100;
  int64_t ddim_steps = 50;
  // Time the process's CPU time instead of the wall clock: on a CPU shared with other
  // work, a single-threaded run's CPU time leaves out the time it waited for a core.
  bool cpu_clock = false;
  bool channels_last = false;  // 4-D weights and the inputs in channels-last layout
  bool cuda_graph = true;      // CUDA: sampling replays one captured graph per step
  AdamWOptions::Impl adamw = AdamWOptions::Impl::Auto;
  AttentionImpl attention = AttentionImpl::Auto;  // --attention, set on every model
};

struct Measurement {
  double seconds = 0;
  double images_per_sec = 0;
  double flops = 0;  // counted FLOPs of the timed work
  int64_t peak_bytes = 0;
};

// The model and diffusion flags of a named configuration.
ModelConfig model_config(const std::string& name, bool use_checkpoint);
DiffusionConfig diffusion_config(const std::string& name);
const std::vector<std::string>& config_names();

class IdiffRunner {
 public:
  explicit IdiffRunner(Settings settings) : settings_(settings) {}
  Measurement run(const Case& c);

 private:
  struct Entry {
    UNetModel model{nullptr};
    std::unique_ptr<SpacedDiffusion> diffusion;
    std::unique_ptr<AdamW> opt;
    std::vector<at::Tensor> params, ema;
  };
  Entry& entry(const Case& c);
  Measurement train(const Case& c, Entry& e);
  Measurement sample(const Case& c, Entry& e);

  Settings settings_;
  std::map<std::string, Entry> entries_;
};

}  // namespace idiff::bench
