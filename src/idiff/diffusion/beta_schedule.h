// Named beta schedules (reference: improved_diffusion/gaussian_diffusion.py,
// get_named_beta_schedule and betas_for_alpha_bar). "linear" is Ho et al. 2020's schedule
// scaled to any step count; "cosine" is Nichol & Dhariwal 2021, eq. 17. Betas are float64,
// as everything derived from them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace idiff {

// The schedule names get_named_beta_schedule accepts, for error messages and --help.
const std::vector<std::string>& beta_schedule_names();

// betas[0..steps) for "linear" or "cosine"; ConfigError naming --noise_schedule (with the
// allowed names) for any other name, and naming --diffusion_steps when steps < 1.
std::vector<double> get_named_beta_schedule(const std::string& name, int64_t steps);

// Betas that discretise alpha_bar(t), t in [0, 1], the cumulative product of (1 - beta):
// beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta).
std::vector<double> betas_for_alpha_bar(int64_t steps,
                                        const std::function<double(double)>& alpha_bar,
                                        double max_beta = 0.999);

}  // namespace idiff
