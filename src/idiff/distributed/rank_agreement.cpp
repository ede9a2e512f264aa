#include "idiff/distributed/rank_agreement.h"

#include "idiff/common/error.h"
#include "idiff/common/hash.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

// A stable 64-bit digest of a setting's text (equal texts, equal digests on every machine;
// a collision would only let a difference through unnoticed).
int64_t digest(const std::string& text) {
  return static_cast<int64_t>(fnv1a64(text));
}

}  // namespace

void check_ranks_agree(DistContext& dist, const RankSettings& settings) {
  if (!dist.is_distributed()) return;
  const int64_t n = static_cast<int64_t>(settings.size());
  const std::vector<at::Tensor> counts = dist.all_gather(at::full({1}, n, at::kLong));
  for (size_t r = 0; r < counts.size(); ++r) {
    IDIFF_REQUIRE(counts[r].item<int64_t>() == n, ConfigError, "rank ", r, " compares ",
                  counts[r].item<int64_t>(), " settings and rank ", dist.rank(), " ", n,
                  ": the ranks run different versions of idiff");
  }
  std::vector<int64_t> mine;
  for (const auto& [name, value] : settings) mine.push_back(digest(value));
  const std::vector<at::Tensor> all = dist.all_gather(at::tensor(mine, at::kLong));
  // Rank 0 compares itself with every rank; the others compare themselves with rank 0.
  for (size_t r = 0; r < all.size(); ++r) {
    if (static_cast<int64_t>(r) == dist.rank() || (dist.rank() != 0 && r != 0)) continue;
    const at::Tensor theirs = all[r].cpu();
    for (int64_t i = 0; i < n; ++i) {
      const auto& [name, value] = settings[static_cast<size_t>(i)];
      IDIFF_REQUIRE(theirs[i].item<int64_t>() == mine[static_cast<size_t>(i)], ConfigError,
                    "the ranks disagree on ", name, ": '", value, "' on rank ", dist.rank(),
                    ", something else on rank ", r, "; start every rank with the same flags");
    }
  }
}

RankSettings model_and_diffusion_settings(const ModelConfig& m, const DiffusionConfig& d) {
  const auto b = [](bool v) { return std::string(v ? "True" : "False"); };
  const auto n = [](auto v) { return str(v); };
  return {{"`image_size`", n(m.image_size)},
          {"`large_size`", n(m.large_size)},
          {"`small_size`", n(m.small_size)},
          {"`num_channels`", n(m.num_channels)},
          {"`num_res_blocks`", n(m.num_res_blocks)},
          {"`num_heads`", n(m.num_heads)},
          {"`num_heads_upsample`", n(m.num_heads_upsample)},
          {"`attention_resolutions`", m.attention_resolutions},
          {"`dropout`", n(m.dropout)},
          {"`learn_sigma`", b(m.learn_sigma)},
          {"`class_cond`", b(m.class_cond)},
          {"`use_checkpoint`", b(m.use_checkpoint)},
          {"`use_scale_shift_norm`", b(m.use_scale_shift_norm)},
          {"`num_head_channels`", n(m.num_head_channels)},
          {"`channel_mult`", m.channel_mult},
          {"`resblock_updown`", b(m.resblock_updown)},
          {"`use_new_attention_order`", b(m.use_new_attention_order)},
          {"`class_dropout_prob`", n(m.class_dropout_prob)},
          {"`image_channels`", n(m.image_channels)},
          {"`sigma_small`", b(d.sigma_small)},
          {"`diffusion_steps`", n(d.diffusion_steps)},
          {"`noise_schedule`", d.noise_schedule},
          {"`timestep_respacing`", d.timestep_respacing},
          {"`use_kl`", b(d.use_kl)},
          {"`predict_xstart`", b(d.predict_xstart)},
          {"`rescale_timesteps`", b(d.rescale_timesteps)},
          {"`rescale_learned_sigmas`", b(d.rescale_learned_sigmas)},
          {"`training_mode`", d.training_mode},
          {"`sigma_min`", n(d.sigma_min)},
          {"`sigma_max`", n(d.sigma_max)},
          {"`sigma_data`", n(d.sigma_data)},
          {"`weight_schedule`", d.weight_schedule}};
}

RankSettings shape_settings(const std::vector<at::Tensor>& parameters) {
  std::string shapes;
  for (const at::Tensor& p : parameters) {
    for (int64_t s : p.sizes()) shapes += std::to_string(s) + "x";
    shapes += ";";
  }
  return {{"the parameter shapes", shapes}};
}

}  // namespace idiff
