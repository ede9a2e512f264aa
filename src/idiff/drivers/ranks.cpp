#include "idiff/drivers/ranks.h"

#include "idiff/common/error.h"
#include "idiff/distributed/rank_agreement.h"

#include <cstdio>

namespace idiff {

Ranks join_ranks(DistContext* given, const std::string& device_flag, double timeout_seconds) {
  Ranks r;
  if (given == nullptr) {
    r.owned = DistContext::from_environment(DistContext::device_for_local_rank(device_flag),
                                            timeout_seconds);
    given = r.owned.get();
  }
  r.ctx = given;
  return r;
}

Ranks join_sampling_ranks(DistContext* given, const ModelConfig& model,
                          const DiffusionConfig& diffusion, const SampleConfig& sample) {
  Ranks r = join_ranks(given, sample.device, sample.dist_timeout);
  RankSettings settings = model_and_diffusion_settings(model, diffusion);
  settings.push_back({"`num_samples`", str(sample.num_samples)});
  settings.push_back({"`batch_size`", str(sample.batch_size)});
  settings.push_back({"`classifier_path`", sample.classifier_path});
  settings.push_back({"`classifier_scale`", str(sample.classifier_scale)});
  settings.push_back({"`guidance_scale`", str(sample.guidance_scale)});
  check_ranks_agree(*r.ctx, settings);
  return r;
}

uint64_t rank_seed(uint64_t seed, int64_t rank) {
  return seed + static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace idiff
