// Ranks started with different settings (a flag typed differently on one machine) would
// meet in collectives with tensors of different shapes, which the backends answer with an
// abort (gloo::EnforceNotMet) or a hang. check_ranks_agree compares the settings once, up
// front, and names the first one that differs.
#pragma once

#include "idiff/config.h"
#include "idiff/distributed/dist_context.h"

#include <string>
#include <utility>
#include <vector>

namespace idiff {

// (name, value) pairs in one fixed order, e.g. {"--num_channels", "128"}.
using RankSettings = std::vector<std::pair<std::string, std::string>>;

// Every rank calls it with its own settings before the first collective that depends on
// them. Two small all_gathers (the count, then one hash per setting); a difference is a
// ConfigError on every rank naming the setting, this rank's value and the other rank.
// A no-op for a single process.
void check_ranks_agree(DistContext& dist, const RankSettings& settings);

// The model and diffusion flags, as they shape the model and every collective.
RankSettings model_and_diffusion_settings(const ModelConfig& m, const DiffusionConfig& d);

// One setting naming the shapes of `parameters`, in order.
RankSettings shape_settings(const std::vector<at::Tensor>& parameters);

}  // namespace idiff
