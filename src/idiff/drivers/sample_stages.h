// The stages of a sampling run (drivers/image_sample.h's run_sampling reads as them, and a
// server calls sample_batch per batch too):
//   check_sample_job    the flags, before anything is loaded or any rank joined
//   prepare_sampling    the model (and classifier), the sampler setup and its solver (made
//                       once), --init_image and --initial_noise; a server loads the models
//                       once (load_sampling_models) and plans each setting (plan_sampling)
//   sample_batch        labels, x_T and one run of the solver for samples [start, start+n)
//                       (sample_batch.cpp; sample_segments: parts of several jobs at once)
//   write_samples       the reference's npz, the float samples, the grid and the PNGs
#pragma once

#include "idiff/common/logger.h"
#include "idiff/data/image_resize.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/image_sample.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/drivers/super_res.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

#include <ATen/core/Generator.h>

#include <functional>
#include <memory>
#include <vector>

namespace idiff {

// What one batch's model calls see: the network (with its labels and low-resolution
// input) and classifier guidance's cond_fn. The solver is made once over functions that
// read this, and sample_batch fills it in for each batch.
struct BatchModel {
  ModelFn fn;
  CondFn cond;
};

struct SamplingPlan {
  SampleJob job;
  std::vector<int64_t> classes;       // --class ("": random labels)
  int64_t num_classes = kNumClasses;  // labels lie in [0, num_classes): a classifier's may be fewer
  bool classifier_guided = false, free_guided = false;
  bool with_labels = false;  // the output carries labels
  int64_t size = 0, channels = 0;
  c10::Device device = c10::kCPU;
  UNetModel model{nullptr};
  EncoderUNetModel classifier{nullptr};
  BaseSamples base;       // super-res: the low-resolution images
  at::Tensor init;        // --init_image [1, C, size, size], or undefined
  at::Tensor noise;       // --initial_noise [num_samples, C, size, size], or undefined
  at::Tensor edit_known;  // `idiff edit`: the part of --image kept [1, C, size, size]
  NoiseLevel first_level;
  SamplerSetup setup;
  std::shared_ptr<BatchModel> current = std::make_shared<BatchModel>();
  std::unique_ptr<Solver> solver;
  LoopOptions loop;
};

// The networks a plan runs; loaded once, shared by every plan made from them.
struct SamplingModels {
  UNetModel model{nullptr};
  EncoderUNetModel classifier{nullptr};  // with --classifier_path
};

// One job's part of a batch: its samples [start, start + n), drawn from its own generator
// in the order a run of that job alone draws them (labels, x_T, then each step's noise), so
// the images do not depend on which other parts share the batch.
struct BatchSegment {
  int64_t start = 0, n = 0;
  at::Generator* gen = nullptr;
  uint64_t seed = 0;             // --generator determ-indiv: the per-image streams' seed
  std::vector<int64_t> classes;  // --class of the job ("": random labels from gen)
  at::Tensor init;               // SDEdit: the job's image [1, C, size, size], or undefined
};

// One batch's outputs, on the CPU.
struct BatchImages {
  at::Tensor uint8;   // [n, H, W, C]
  at::Tensor floats;  // [n, C, H, W] float32 with --save_float, else [0, C, H, W]
  at::Tensor labels;  // [n] int64, or [0] without labels
  at::Tensor finite;  // [n] bool: the sample holds no NaN or infinity
};

// --model_path given, --num_samples and --batch_size at least 1 (sample, nll).
void check_checkpoint_and_counts(const SampleConfig& s);

// ConfigErrors naming the flag for anything the job's flags get wrong.
void check_sample_job(const SampleJob& job);

// The model (and classifier) of the job's flags, on `device`, logging what it loads.
SamplingModels load_sampling_models(const SampleJob& job, c10::Device device, Logger& logger);

// Builds everything the batches of one setting share over loaded models: the solver,
// --init_image, --initial_noise, the edit task; `base`: super-resolution's low-resolution
// images already read (else read here).
SamplingPlan plan_sampling(const SampleJob& job, SamplerSetup setup, const SamplingModels& models,
                           c10::Device device, Logger& logger, BaseSamples* base = nullptr);

// load_sampling_models, then plan_sampling.
SamplingPlan prepare_sampling(const SampleJob& job, SamplerSetup setup, c10::Device device,
                              Logger& logger);

// --init_image's tensor from a decoded image: resized as training data is, [1, C, size,
// size] in [-1, 1]. `what` names the image in errors.
at::Tensor init_image_tensor(const Image8& decoded, int64_t size, int64_t channels,
                             const std::string& what);

// The log lines of a plan: "sampling N images with unipc, 10 steps (...)...", the defaults
// taken, the guidance.
std::vector<std::string> describe_sampling(const SamplingPlan& plan, int64_t world_size);

// Samples [start, start + n) of the run (global indices: labels, --initial_noise rows and
// base images are taken by index), with labels and x_T drawn from `gen`. Error naming
// the batch when the samples are not finite.
BatchImages sample_batch(SamplingPlan& plan, int64_t start, int64_t n, at::Generator& gen,
                         const StepCallback& progress, int64_t batch_number);

// One batch made of parts of several jobs of the plan's setting (classes and init images
// per part), in the order given; rows of the output follow the parts. Non-finite samples
// are marked in `finite` (a server fails only their job); sample_batch is this with one
// part, and an error when any sample is not finite.
BatchImages sample_segments(SamplingPlan& plan, const std::vector<BatchSegment>& parts,
                            const StepCallback& progress, int64_t batch_number);

// Rank 0's files into logger.dir(); fills r.npz_path and r.grid_path. Beside them
// samples.json records the checkpoint, seed, sampler, flags and time.
void write_samples(const SamplingPlan& plan, SampleResult& r, const at::Tensor& floats,
                   int64_t world_size, Logger& logger);

}  // namespace idiff
