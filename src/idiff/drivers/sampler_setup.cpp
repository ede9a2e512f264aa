#include "idiff/drivers/sampler_setup.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/karras_sample.h"
#include "idiff/diffusion/sampling/sampler_registry.h"

namespace idiff {

namespace {

// The settings of --sampler's row: in range, and none given that it does not read. Returns
// the row.
const SamplerRow& checked_row(const SolverOptions& o) {
  const SamplerRow& row = find_sampler(o.name);
  check_solver_settings(row, o);
  const std::vector<std::string> unread = unread_settings(row, o);
  IDIFF_REQUIRE(unread.empty(), ConfigError, "`sampler` ", row.name, " does not read ",
                join(unread, ", "), " (it reads: ", setting_names(row.settings), ")");
  return row;
}

void fill_solver_settings(const SampleConfig& s, SolverOptions& o) {
  o.eta = s.eta;
  o.order = s.order;
  o.unipc_variant = s.unipc_variant;
  o.lower_order_final = s.lower_order_final;
  o.s_churn = s.s_churn;
  o.s_tmin = s.s_tmin;
  o.s_tmax = s.s_tmax;
  o.s_noise = s.s_noise;
}

// The flags no Karras model takes: the Gaussian diffusion's steps and the reference's loops.
void refuse_gaussian_flags(const SampleConfig& s, const DiffusionConfig& d) {
  const auto refuse = [&d](bool given, const char* flag, const char* why) {
    IDIFF_REQUIRE(!given, ConfigError, "`", flag, "` ", why, " (`training_mode` ", d.training_mode,
                  " is a Karras denoiser)");
  };
  refuse(!d.timestep_respacing.empty(), "timestep_respacing",
         "respaces a Gaussian diffusion; give `steps`");
  refuse(s.use_ddim, "use_ddim", "runs the reference's Gaussian-diffusion loop; give `sampler`");
  refuse(s.dynamic_threshold > 0, "dynamic_threshold", "is not applied to Karras models");
  refuse(s.final_sigma != "zero", "final_sigma", "is chosen by the sampler (progdist ends at min)");
  refuse(s.resample_jumps != 0 || s.jump_length != 0, "resample_jumps",
         "is RePaint's, for improved-/guided-diffusion models; a consistency model edits "
         "at its `ts`");
}

// For the log: "ts 0,22,39 of 40 Karras levels" or "karras from sigma 80".
std::string karras_schedule_name(const SampleConfig& s, const KarrasSampleOptions& o,
                                 const NoiseLevel& first) {
  if (o.ts.empty())
    return str(s.schedule.empty() ? "karras" : s.schedule, " from sigma ", first.sigma_k());
  std::vector<std::string> ts;
  for (int64_t t : o.ts) ts.push_back(std::to_string(t));
  return str("ts ", join(ts, ","), " of ", o.steps, " Karras levels");
}

// consistency_models' image_sample.py: --sampler (heun), --steps (40) of a Karras spacing
// from --sigma_max (the diffusion's, 80) to --sigma_min, or the --ts of multistep.
SamplerSetup karras_setup(const SampleConfig& s, const DiffusionConfig& d) {
  refuse_gaussian_flags(s, d);
  SamplerSetup out;
  KarrasParams p = karras_params(d);
  if (s.sigma_max >= 0) p.sigma_max = s.sigma_max;
  check_karras_params(p);
  out.karras = p;
  const NoiseSchedule ns = karras_noise_schedule(p);
  // `idiff edit` samples with the consistency sampler, by default at the reference's ts.
  const bool edit = !s.edit_task.empty();
  // A progressive distillation's model samples with the Euler steps it learned.
  const char* default_sampler = edit                            ? "multistep"
                                : d.training_mode == "progdist" ? "progdist"
                                                                : "heun";
  const bool default_ts = edit && s.sampler.empty() && s.ts.empty() && s.steps == 0;
  // A steps file (`idiff tune-steps` of a consistency model: its searched ts) holds the levels.
  const bool file = !s.steps_file.empty() || !s.steps_json.empty();
  IDIFF_REQUIRE(!file || (s.ts.empty() && s.steps == 0), ConfigError,
                "`steps_file` holds the steps: give no `ts` or `steps` with it");
  std::string file_sampler;
  const StepSchedule from_file =
      !file ? StepSchedule()
      : s.steps_json.empty()
          ? read_steps_file(s.steps_file, ns.num_timesteps(), &file_sampler)
          : parse_steps_json(s.steps_json, "`steps_file`", ns.num_timesteps(), &file_sampler);
  KarrasSampleOptions o;
  o.solver.name = !s.sampler.empty()      ? s.sampler
                  : !file_sampler.empty() ? file_sampler
                                          : default_sampler;
  fill_solver_settings(s, o.solver);
  o.steps = s.steps > 0 ? s.steps : 40;
  o.ts = default_ts ? std::vector<int64_t>{0, 22, 39} : parse_int_list(s.ts, "`ts`");
  o.clip_denoised = s.clip_denoised;
  const SamplerRow& row = checked_row(o.solver);
  IDIFF_REQUIRE(o.ts.empty() || std::string(row.name) == "multistep", ConfigError,
                "`ts` is read by multistep, not by ", row.name);
  out.solver = o.solver;
  if (file) {
    out.schedule = from_file;
  } else if (!s.schedule.empty() || s.t_start >= 0) {
    out.schedule = make_step_schedule(ns, s.schedule.empty() ? "karras" : s.schedule, o.steps,
                                      s.t_start, !row.final_min, 0.0);
  } else {
    out.schedule = karras_step_schedule(ns, o);
  }
  out.schedule_name = file ? "the steps of " + s.steps_file
                           : karras_schedule_name(s, o, ns.level(out.schedule.levels.front()));
  std::vector<std::string> taken;
  if (s.sampler.empty()) taken.push_back(str("--sampler ", o.solver.name));
  if (s.steps == 0 && !file) taken.push_back("--steps 40");
  if (default_ts) taken.push_back("--ts 0,22,39");
  if (!taken.empty()) {
    out.defaults_note =
        str("defaults: ", join(taken, " "),
            file && !file_sampler.empty() ? str(" (the sampler ", s.steps_file, " was tuned for)")
                                          : " (consistency_models' image_sample.py)");
  }
  out.denoiser.karras = p;
  out.denoiser.threshold = s.clip_denoised ? Threshold::Clip : Threshold::None;
  return out;
}

// The steps: --steps_file (and the sampler it names), --steps of --schedule, or the
// reference's --timestep_respacing. Returns the file's sampler ("" without).
std::string choose_steps(const SampleConfig& s, const DiffusionConfig& d, SamplerSetup& out) {
  const NoiseSchedule ns = noise_schedule_of(out.params);
  const int64_t T = ns.num_timesteps();
  const bool file = !s.steps_file.empty() || !s.steps_json.empty();
  const int given = file + (s.steps > 0) + !d.timestep_respacing.empty();
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
  if (!s.steps_json.empty()) {
    out.schedule = parse_steps_json(s.steps_json, "`steps_file`", T, &file_sampler);
    out.schedule_name = "the steps given";
  } else if (!s.steps_file.empty()) {
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
      const std::string& why = s.schedule.empty() ? defaults.why : defaults.sigma_max_why;
      out.defaults_note = str("defaults for --steps: ", join(taken, " "),
                              why.empty() ? std::string() : str(" (", why, ")"));
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
  fill_solver_settings(s, out.solver);
  checked_row(out.solver);
}

// `idiff edit` with an improved-/guided-diffusion model: RePaint (repaint.h), by default as
// its paper samples: ancestral steps over 250 of the process' steps, integer timesteps for
// --steps, jumps of 10 resampled 10 times. Returns the flags with those defaults filled in.
SampleConfig repaint_defaults(const SampleConfig& s, DiffusionConfig& d, SamplerSetup& out) {
  SampleConfig e = s;
  std::vector<std::string> taken;
  const bool file = !s.steps_file.empty() || !s.steps_json.empty();
  if (s.sampler.empty() && !s.use_ddim && !file) {
    e.sampler = "ddpm";
    taken.push_back("--sampler ddpm");
  }
  if (!file && s.steps == 0 && d.timestep_respacing.empty() && d.diffusion_steps >= 250) {
    d.timestep_respacing = "250";
    taken.push_back("--timestep_respacing 250");
  }
  if (s.steps > 0 && s.schedule.empty()) {
    e.schedule = "trailing";
    taken.push_back("--schedule trailing");
  }
  RepaintOptions o;
  if (s.jump_length > 0) o.jump_length = s.jump_length;
  if (s.resample_jumps > 0) o.resample_jumps = s.resample_jumps;
  if (s.jump_length == 0) taken.push_back(str("--jump_length ", o.jump_length));
  if (s.resample_jumps == 0) taken.push_back(str("--resample_jumps ", o.resample_jumps));
  out.repaint = o;
  if (!taken.empty())
    out.defaults_note = str("defaults for RePaint: ", join(taken, " "), " (Lugmayr et al. 2022)");
  return e;
}

}  // namespace

SamplerSetup sampler_setup(const SampleConfig& s, const DiffusionConfig& d) {
  IDIFF_REQUIRE(s.ts.empty() || is_karras(d), ConfigError,
                "`ts` indexes the Karras levels of consistency_models' samplers (`training_mode` "
                "edm or consistency_*); give `steps`");
  if (is_karras(d)) return karras_setup(s, d);
  SamplerSetup out;
  DiffusionConfig full = d;
  full.timestep_respacing = "";
  out.params = diffusion_params(full);
  DiffusionConfig spaced = d;
  const SampleConfig e = s.edit_task.empty() ? s : repaint_defaults(s, spaced, out);
  const std::string note = out.defaults_note;
  choose_solver(e, choose_steps(e, spaced, out), out);
  if (!note.empty()) out.defaults_note = note;
  IDIFF_REQUIRE(s.dynamic_threshold >= 0 && s.dynamic_threshold <= 1, ConfigError,
                "`dynamic_threshold` must lie in (0, 1] (0: off), got ", s.dynamic_threshold);
  out.denoiser.threshold = s.dynamic_threshold > 0 ? Threshold::Dynamic
                           : s.clip_denoised       ? Threshold::Clip
                                                   : Threshold::None;
  if (s.dynamic_threshold > 0) out.denoiser.dynamic_threshold_p = s.dynamic_threshold;
  return out;
}

NoiseSchedule noise_schedule_of(const SamplerSetup& setup) {
  return setup.karras ? karras_noise_schedule(*setup.karras) : noise_schedule_of(setup.params);
}

std::unique_ptr<Solver> make_solver(const SamplerSetup& setup, const ModelFn& model) {
  if (setup.karras) {
    return make_engine_solver(setup.solver, noise_schedule_of(setup), setup.schedule, model,
                              setup.denoiser);
  }
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
