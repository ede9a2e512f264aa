// What the drivers share about running on several processes (reference: the scripts'
// dist_util.setup_dist and their per-rank seeds): the ranks to share the work with, and
// each rank's noise seed.
#pragma once

#include "idiff/config.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/rank_agreement.h"
#include "idiff/drivers/sampler_setup.h"

#include <cstdint>
#include <memory>
#include <string>

namespace idiff {

// The ranks to share the work with: `given`, else those the launcher's variables describe
// (a single process without them), on the device `device_flag` names for this local rank.
struct Ranks {
  std::unique_ptr<DistContext> owned;
  DistContext* ctx = nullptr;
};
Ranks join_ranks(DistContext* given, const std::string& device_flag, double timeout_seconds);

// join_ranks for a sampling or evaluation run (`sample.device`, `sample.dist_timeout`),
// then, before the first collective, the check that every rank has the same model,
// diffusion, num_samples, batch_size and guidance, and with a sampler `setup` (sampling,
// not nll) every setting that shapes the images: sampling_settings.
Ranks join_sampling_ranks(DistContext* given, const ModelConfig& model,
                          const DiffusionConfig& diffusion, const SampleConfig& sample,
                          const SamplerSetup* setup = nullptr);

// What shapes the samples beyond the model: the sampler and the settings its registry row
// reads, the resolved step schedule (however its flags spelled it), the thresholding, the
// seed, the labels asked for, the starting images or noise, and the output kinds.
RankSettings sampling_settings(const SampleConfig& sample, const SamplerSetup& setup);

// The seed of rank r's noise generator: `seed` itself on rank 0, so one process draws what
// it always drew; a different stream on every other rank.
uint64_t rank_seed(uint64_t seed, int64_t rank);

}  // namespace idiff
