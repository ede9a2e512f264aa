// Respacing: a diffusion process over a subset of an original process's steps (reference:
// improved_diffusion/respace.py; Nichol & Dhariwal 2021 sec. 4, "Improving Sampling Speed").
// Keeping steps S = {s_1 < s_2 < ...} with the original alpha_bar gives the new
// beta_i = 1 - alpha_bar_{s_i} / alpha_bar_{s_{i-1}}; the model is still called with the
// original step numbers (GaussianDiffusion::timestep_map).
#pragma once

#include "idiff/diffusion/gaussian_diffusion.h"

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace idiff {

// The steps of a num_timesteps process to keep. section_counts: "10,15,20" splits the process
// into three equal sections and takes 10, 15 and 20 evenly spaced steps from them; "ddimN"
// takes N steps with the integer stride of the DDIM paper. Impossible requests are a
// ConfigError naming --timestep_respacing with the reference's text ("cannot divide section
// of 333 steps into 400", "cannot create exactly 1000 steps with an integer stride").
std::set<int64_t> space_timesteps(int64_t num_timesteps, const std::string& section_counts);

// A GaussianDiffusion over the kept steps of the process `base` describes. It adds no state
// of its own, so it may be copied into a GaussianDiffusion.
class SpacedDiffusion : public GaussianDiffusion {
 public:
  SpacedDiffusion(const std::set<int64_t>& use_timesteps, const DiffusionParams& base);

 private:
  SpacedDiffusion(std::pair<DiffusionParams, std::vector<int64_t>> respaced,
                  int64_t original_num_steps);
};

}  // namespace idiff
