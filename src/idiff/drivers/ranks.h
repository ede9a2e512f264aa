// What the drivers share about running on several processes (reference: the scripts'
// dist_util.setup_dist and their per-rank seeds): the ranks to share the work with, and
// each rank's noise seed.
#pragma once

#include "idiff/distributed/dist_context.h"

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

// The seed of rank r's noise generator: `seed` itself on rank 0, so one process draws what
// it always drew; a different stream on every other rank.
uint64_t rank_seed(uint64_t seed, int64_t rank);

// Full precision, as numpy prints a float64 (the reference logs np.mean(...)).
std::string format_double(double v);

}  // namespace idiff
