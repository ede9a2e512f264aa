#include "idiff/drivers/sampler_setup.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sampler_registry.h"

namespace idiff {

namespace {

// The steps: --steps_file (and the sampler it names), --steps of --schedule, or the
// reference's --timestep_respacing. Returns the file's sampler ("" without).
std::string choose_steps(const SampleConfig& s, const DiffusionConfig& d, SamplerSetup& out) {
  const NoiseSchedule ns = noise_schedule_of(out.params);
  const int64_t T = ns.num_timesteps();
  const int given = !s.steps_file.empty() + (s.steps > 0) + !d.timestep_respacing.empty();
  IDIFF_REQUIRE(given <= 1, ConfigError,
                "`steps_file`, `steps` and `timestep_respacing` each choose the steps: give one");
  IDIFF_REQUIRE(s.steps >= 0, ConfigError, "`steps` must be at least 1 (0: not set), got ",
                s.steps);
  IDIFF_REQUIRE(s.steps > 0 || (s.schedule.empty() && s.t_start < 0 && s.final_sigma == "zero" &&
                                s.sigma_max < 0),
                ConfigError, "`schedule`, `t_start`, `sigma_max` and `final_sigma` need `steps`");
  IDIFF_REQUIRE(s.final_sigma == "zero" || s.final_sigma == "min", ConfigError,
                "`final_sigma` must be zero or min, got '", s.final_sigma, "'");
  std::string file_sampler;
  if (!s.steps_file.empty()) {
    out.schedule = read_steps_file(s.steps_file, T, &file_sampler);
    out.schedule_name = "the steps of " + s.steps_file;
  } else if (s.steps > 0) {
    const ScheduleDefaults defaults = default_schedule(ns, s.steps);
    const std::string name = s.schedule.empty() ? defaults.name : s.schedule;
    out.sigma_max = s.sigma_max >= 0 ? s.sigma_max : defaults.sigma_max;
    out.schedule =
        make_step_schedule(ns, name, s.steps, s.t_start, s.final_sigma == "zero", out.sigma_max);
    const bool capped = first_step_capped(ns, out.schedule.levels.front(), s.steps, out.sigma_max);
    out.schedule_name =
        str(name, " from t=", out.schedule.levels.front(),
            capped ? str(" (first step to sigma ", out.sigma_max, ")") : std::string(),
            s.final_sigma == "zero" ? " to sigma 0" : " to t=0");
    std::vector<std::string> taken;
    if (s.sampler.empty() && !s.use_ddim) taken.push_back("--sampler unipc");
    if (s.schedule.empty()) taken.push_back("--schedule " + defaults.name);
    if (s.sigma_max < 0) taken.push_back(str("--sigma_max ", defaults.sigma_max));
    if (!taken.empty()) {
      out.defaults_note = str("defaults for --steps: ", join(taken, " "), " (", defaults.why, ")");
    }
  } else {
    out.schedule = respacing_schedule(T, d.timestep_respacing);
    out.schedule_name = d.timestep_respacing.empty() ? std::string("every step")
                                                     : "respacing " + d.timestep_respacing;
  }
  return file_sampler;
}

// The solver: --sampler, else ddim with --use_ddim, else the steps file's sampler, else
// UniPC with --steps (measured best at 10-20 calls from full noise, README), else the
// reference's ddpm; its settings checked by its registry row.
void choose_solver(const SampleConfig& s, const std::string& file_sampler, SamplerSetup& out) {
  IDIFF_REQUIRE(!s.use_ddim || s.sampler.empty() || s.sampler == "ddim", ConfigError,
                "`use_ddim` True asks for ddim and `sampler` for ", s.sampler, ": give one");
  out.solver.name = !s.sampler.empty()      ? s.sampler
                    : s.use_ddim            ? "ddim"
                    : !file_sampler.empty() ? file_sampler
                    : s.steps > 0           ? "unipc"
                                            : "ddpm";
  if (s.sampler.empty() && !s.use_ddim && !file_sampler.empty()) {
    out.defaults_note =
        str("--sampler ", file_sampler, ": the sampler ", s.steps_file, " was tuned for");
  }
  out.solver.eta = s.eta;
  out.solver.order = s.order;
  out.solver.unipc_variant = s.unipc_variant;
  out.solver.lower_order_final = s.lower_order_final;
  const SamplerRow& row = find_sampler(out.solver.name);
  check_solver_settings(row, out.solver);
  const std::vector<std::string> unread = unread_settings(row, out.solver);
  IDIFF_REQUIRE(unread.empty(), ConfigError, "`sampler` ", row.name, " does not read ",
                join(unread, ", "), " (it reads: ", setting_names(row.settings), ")");
}

}  // namespace

SamplerSetup sampler_setup(const SampleConfig& s, const DiffusionConfig& d) {
  SamplerSetup out;
  DiffusionConfig full = d;
  full.timestep_respacing = "";
  out.params = diffusion_params(full);
  choose_solver(s, choose_steps(s, d, out), out);
  IDIFF_REQUIRE(s.dynamic_threshold >= 0 && s.dynamic_threshold <= 1, ConfigError,
                "`dynamic_threshold` must lie in (0, 1] (0: off), got ", s.dynamic_threshold);
  out.denoiser.threshold = s.dynamic_threshold > 0 ? Threshold::Dynamic
                           : s.clip_denoised       ? Threshold::Clip
                                                   : Threshold::None;
  if (s.dynamic_threshold > 0) out.denoiser.dynamic_threshold_p = s.dynamic_threshold;
  return out;
}

std::unique_ptr<Solver> make_solver(const SamplerSetup& setup, const ModelFn& model) {
  return make_solver(setup.solver, setup.params, setup.schedule, model, setup.denoiser);
}

std::string describe(const Solver& solver, const SamplerSetup& setup) {
  // A row with the reference's sampler and an engine formula says which one runs.
  const SamplerRow& row = find_sampler(setup.solver.name);
  std::string which;
  if (row.reference != ReferenceSampler::None && row.engine != nullptr) {
    which = has_integer_levels(setup.schedule) ? " (the reference's loop)"
                                               : " (on the continuous schedule)";
  }
  return str(solver.name(), which, ", ", solver.num_steps(), " steps (", solver.total_model_calls(),
             " model calls), ", setup.schedule_name);
}

}  // namespace idiff
