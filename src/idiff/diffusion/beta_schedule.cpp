#include "idiff/diffusion/beta_schedule.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cmath>

namespace idiff {

const std::vector<std::string>& beta_schedule_names() {
  static const std::vector<std::string> names = {"linear", "cosine"};
  return names;
}

std::vector<double> betas_for_alpha_bar(int64_t steps,
                                        const std::function<double(double)>& alpha_bar,
                                        double max_beta) {
  std::vector<double> betas(static_cast<size_t>(steps));
  for (int64_t i = 0; i < steps; ++i) {
    const double t1 = static_cast<double>(i) / static_cast<double>(steps);
    const double t2 = static_cast<double>(i + 1) / static_cast<double>(steps);
    betas[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), max_beta);
  }
  return betas;
}

std::vector<double> get_named_beta_schedule(const std::string& name, int64_t steps) {
  IDIFF_REQUIRE(steps >= 1, ConfigError, "`diffusion_steps` must be at least 1, got ", steps);
  if (name == "linear") {
    // Ho et al. 2020 use 1e-4 .. 0.02 over 1000 steps; scaling by 1000/T keeps the total
    // noise the same for other step counts. numpy.linspace: start + i * step, last = end.
    const double scale = 1000.0 / static_cast<double>(steps);
    const double start = scale * 0.0001;
    const double end = scale * 0.02;
    std::vector<double> betas(static_cast<size_t>(steps));
    if (steps == 1) {
      betas[0] = start;
      return betas;
    }
    const double step = (end - start) / static_cast<double>(steps - 1);
    for (int64_t i = 0; i < steps; ++i) betas[i] = static_cast<double>(i) * step + start;
    betas.back() = end;
    return betas;
  }
  if (name == "cosine") {
    // Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2((t/T + s) / (1 + s) * pi/2),
    // s = 0.008, with betas clipped at 0.999 to avoid the singularity at t = T.
    return betas_for_alpha_bar(steps, [](double t) {
      const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
      return c * c;
    });
  }
  std::string allowed;
  for (const auto& n : beta_schedule_names()) allowed += (allowed.empty() ? "" : ", ") + n;
  throw ConfigError(str("`noise_schedule` '", name,
                        "' is not a known beta schedule (expected one of: ", allowed, ")"));
}

}  // namespace idiff
