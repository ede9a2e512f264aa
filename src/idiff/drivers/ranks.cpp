#include "idiff/drivers/ranks.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/distributed/rank_agreement.h"

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

RankSettings sampling_settings(const SampleConfig& s, const SamplerSetup& setup) {
  const SamplerRow& row = find_sampler(setup.solver.name);
  // Every solver setting, with "-" for those the sampler does not read: the ranks compare
  // one list of one length whatever sampler each was given.
  RankSettings out = {{"`sampler`", row.name}};
  for (const SolverSettingRow& setting : solver_settings()) {
    out.push_back({str("`", setting.name, "`"),
                   (row.settings & setting.bit) ? setting.value(setup.solver) : "-"});
  }
  std::vector<std::string> levels;
  for (double level : setup.schedule.levels) levels.push_back(format_double(level));
  out.push_back(
      {"the step schedule (`steps`, `schedule`, `t_start`, `final_sigma`, "
       "`steps_file`, `timestep_respacing`, `ts`, `sigma_max`)",
       join(levels, ",")});
  out.push_back({"`clip_denoised` / `dynamic_threshold`",
                 str(static_cast<int>(setup.denoiser.threshold), " ",
                     format_double(setup.denoiser.dynamic_threshold_p))});
  out.push_back({"`seed`", str(s.seed)});
  out.push_back({"`class`", s.classes});
  out.push_back({"`init_image`", s.init_image});
  out.push_back({"`initial_noise`", s.initial_noise});
  out.push_back({"`save_float`", str(s.save_float)});
  out.push_back({"`generator`", s.generator});
  out.push_back({"the edit (`task`, `image`, `mask`, `resample_jumps`, `jump_length`)",
                 str(s.edit_task, " ", s.edit_image, " ", s.edit_mask, " ", s.resample_jumps, " ",
                     s.jump_length)});
  return out;
}

Ranks join_sampling_ranks(DistContext* given, const ModelConfig& model,
                          const DiffusionConfig& diffusion, const SampleConfig& sample,
                          const SamplerSetup* setup) {
  Ranks r = join_ranks(given, sample.device, sample.dist_timeout);
  RankSettings settings = model_and_diffusion_settings(model, diffusion);
  settings.push_back({"`num_samples`", str(sample.num_samples)});
  settings.push_back({"`batch_size`", str(sample.batch_size)});
  settings.push_back({"`classifier_path`", sample.classifier_path});
  settings.push_back({"`classifier_scale`", str(sample.classifier_scale)});
  settings.push_back({"`guidance_scale`", str(sample.guidance_scale)});
  if (setup != nullptr) {
    for (const auto& setting : sampling_settings(sample, *setup)) settings.push_back(setting);
  }
  check_ranks_agree(*r.ctx, settings);
  return r;
}

uint64_t rank_seed(uint64_t seed, int64_t rank) {
  return seed + static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
}

}  // namespace idiff
