#include "idiff/drivers/ranks.h"

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

uint64_t rank_seed(uint64_t seed, int64_t rank) {
  return seed + static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace idiff
