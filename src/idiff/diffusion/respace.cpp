#include "idiff/diffusion/respace.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <utility>
#include <vector>

namespace idiff {

namespace {

constexpr const char* kFlag = "`timestep_respacing`";

int64_t parse_count(const std::string& item, const std::string& whole) {
  const std::string s = trim(item);
  char* end = nullptr;
  errno = 0;
  const long long v = s.empty() ? 0 : std::strtoll(s.c_str(), &end, 10);
  IDIFF_REQUIRE(!s.empty() && errno == 0 && *end == '\0', ConfigError, kFlag, " '", whole, "': '",
                item,
                "' is not an integer (expected step counts like \"10,15,20\" or "
                "\"ddim50\")");
  return v;
}

// The new betas of the kept steps and the original step of each.
std::pair<DiffusionParams, std::vector<int64_t>> respaced(const std::set<int64_t>& use_timesteps,
                                                          DiffusionParams params) {
  const int64_t n = static_cast<int64_t>(params.betas.size());
  IDIFF_REQUIRE(!use_timesteps.empty(), ConfigError, kFlag, ": no timesteps to keep");
  IDIFF_REQUIRE(*use_timesteps.begin() >= 0 && *use_timesteps.rbegin() < n, ConfigError, kFlag,
                ": timesteps to keep must be in [0, ", n, "), got ", *use_timesteps.begin(), " .. ",
                *use_timesteps.rbegin());
  std::vector<double> new_betas;
  std::vector<int64_t> timestep_map;
  double alpha_cumprod = 1.0, last_alpha_cumprod = 1.0;
  for (int64_t i = 0; i < n; ++i) {
    alpha_cumprod *= 1.0 - params.betas[i];
    if (use_timesteps.count(i)) {
      new_betas.push_back(1.0 - alpha_cumprod / last_alpha_cumprod);
      last_alpha_cumprod = alpha_cumprod;
      timestep_map.push_back(i);
    }
  }
  params.betas = std::move(new_betas);
  return {std::move(params), std::move(timestep_map)};
}

}  // namespace

std::set<int64_t> space_timesteps(int64_t num_timesteps, const std::string& section_counts) {
  IDIFF_REQUIRE(num_timesteps >= 1, ConfigError, "`diffusion_steps` must be at least 1, got ",
                num_timesteps);
  if (section_counts.rfind("ddim", 0) == 0) {
    const int64_t desired = parse_count(section_counts.substr(4), section_counts);
    for (int64_t stride = 1; stride < num_timesteps; ++stride) {
      if ((num_timesteps + stride - 1) / stride == desired) {  // len(range(0, T, stride))
        std::set<int64_t> steps;
        for (int64_t s = 0; s < num_timesteps; s += stride) steps.insert(s);
        return steps;
      }
    }
    // The reference's text (which names the process's step count, not the request).
    throw ConfigError(str(kFlag, " '", section_counts, "': cannot create exactly ", num_timesteps,
                          " steps with an integer stride"));
  }

  std::vector<int64_t> counts;
  for (const auto& item : split(section_counts, ',')) {
    const int64_t c = parse_count(item, section_counts);
    IDIFF_REQUIRE(c >= 1, ConfigError, kFlag, " '", section_counts,
                  "': step counts must be positive, got ", c);
    counts.push_back(c);
  }
  const int64_t sections = static_cast<int64_t>(counts.size());
  const int64_t size_per = num_timesteps / sections;
  const int64_t extra = num_timesteps % sections;
  int64_t start = 0;
  std::set<int64_t> steps;
  for (int64_t i = 0; i < sections; ++i) {
    const int64_t size = size_per + (i < extra ? 1 : 0);
    const int64_t count = counts[i];
    IDIFF_REQUIRE(size >= count, ConfigError, kFlag, " '", section_counts,
                  "': cannot divide section of ", size, " steps into ", count);
    const double frac_stride =
        count <= 1 ? 1.0 : static_cast<double>(size - 1) / static_cast<double>(count - 1);
    double cur = 0.0;
    for (int64_t k = 0; k < count; ++k) {
      // Python's round(): halves to even, which nearbyint does in the default rounding mode.
      steps.insert(start + static_cast<int64_t>(std::nearbyint(cur)));
      cur += frac_stride;
    }
    start += size;
  }
  return steps;
}

SpacedDiffusion::SpacedDiffusion(const std::set<int64_t>& use_timesteps,
                                 const DiffusionParams& base)
    : SpacedDiffusion(respaced(use_timesteps, base), static_cast<int64_t>(base.betas.size())) {}

SpacedDiffusion::SpacedDiffusion(std::pair<DiffusionParams, std::vector<int64_t>> r,
                                 int64_t original_num_steps)
    : GaussianDiffusion(r.first, std::move(r.second), original_num_steps) {}

}  // namespace idiff
