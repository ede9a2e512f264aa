// The sampler and solver-setting tables (sampler_registry.h). To add a sampler: write its
// coefficients (a LinearPlan, linear_multistep.h) or its Solver in a file of its own, then
// add one row below; the flag help, the README table test and make_solver follow.
#include "idiff/diffusion/sampling/sampler_registry.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/sampling/linear_multistep.h"

#include <cmath>

namespace idiff {
namespace {

using Levels = std::vector<NoiseLevel>;
using NS = NoiseSchedule;

std::string real(double v) {
  return str(v);
}

void check_non_negative(double v, const char* flag) {
  IDIFF_REQUIRE(!std::isnan(v) && v >= 0.0, ConfigError, "`", flag,
                "` must be a non-negative number, got ", v);
}

std::unique_ptr<Solver> linear(const char* name, const StepSchedule& s, const Levels& l, Denoiser d,
                               LinearPlan plan) {
  return make_linear_solver(name, s, l, std::move(d), std::move(plan));
}

}  // namespace

const std::vector<SolverSettingRow>& solver_settings() {
  static const std::vector<SolverSettingRow> rows = {
      {kSettingEta, "eta", "DDIM's noise scale (Song et al. eq. 16; 0: deterministic)",
       [](const SolverOptions& o) { return str(o.eta); },
       [](const SolverOptions& o) {
         IDIFF_REQUIRE(std::isfinite(o.eta) && o.eta >= 0.0, ConfigError,
                       "`eta` must be a non-negative number, got ", o.eta);
       }},
      {kSettingOrder, "order", "the solver's order, 1-3",
       [](const SolverOptions& o) { return str(o.order); },
       [](const SolverOptions& o) {
         IDIFF_REQUIRE(o.order >= 1 && o.order <= 3, ConfigError, "`order` must be 1, 2 or 3, got ",
                       o.order);
       }},
      {kSettingUnipcVariant, "unipc_variant", "UniPC's B(h): bh1 (few steps) or bh2",
       [](const SolverOptions& o) { return o.unipc_variant; },
       [](const SolverOptions& o) {
         IDIFF_REQUIRE(o.unipc_variant == "bh1" || o.unipc_variant == "bh2", ConfigError,
                       "`unipc_variant` must be bh1 or bh2, got '", o.unipc_variant, "'");
       }},
      {kSettingLowerOrderFinal, "lower_order_final",
       "lower orders in the last steps below 15 steps (as diffusers)",
       [](const SolverOptions& o) { return std::string(o.lower_order_final ? "True" : "False"); },
       nullptr},
      {kSettingSChurn, "s_churn", "stochastic churn of Karras et al. Alg. 2 (0: none)",
       [](const SolverOptions& o) { return real(o.s_churn); },
       [](const SolverOptions& o) { check_non_negative(o.s_churn, "s_churn"); }},
      {kSettingSTmin, "s_tmin", "churn only at levels sigma >= s_tmin",
       [](const SolverOptions& o) { return real(o.s_tmin); },
       [](const SolverOptions& o) { check_non_negative(o.s_tmin, "s_tmin"); }},
      {kSettingSTmax, "s_tmax", "churn only at levels sigma <= s_tmax",
       [](const SolverOptions& o) { return real(o.s_tmax); },
       [](const SolverOptions& o) {
         IDIFF_REQUIRE(o.s_tmax >= o.s_tmin, ConfigError, "`s_tmax` (", o.s_tmax,
                       ") must not be below `s_tmin` (", o.s_tmin, ")");
       }},
      {kSettingSNoise, "s_noise", "scale of the churn's noise",
       [](const SolverOptions& o) { return real(o.s_noise); },
       [](const SolverOptions& o) { check_non_negative(o.s_noise, "s_noise"); }},
  };
  return rows;
}

const std::vector<SamplerRow>& sampler_registry() {
  static const std::vector<SamplerRow> rows = {
      {"ddpm", "the reference's ancestral sampler (p_sample; Ho et al. 2020, Alg. 2)", 0,
       ReferenceSampler::PSample, nullptr},
      {"ddim",
       "DDIM (Song et al. 2021): the reference's ddim_sample on integer timesteps, the same "
       "update on the continuous schedule otherwise",
       kSettingEta, ReferenceSampler::DdimSample,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("ddim", s, l, std::move(d), ddim_plan(l, o.eta));
       }},
      {"dpmpp_2m", "DPM-Solver++(2M) (Lu et al. 2022)", kSettingLowerOrderFinal,
       ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("dpmpp_2m", s, l, std::move(d),
                       dpm_solver_pp_plan(l, 2, false, o.lower_order_final));
       }},
      {"dpmpp_3m", "DPM-Solver++(3M) (Lu et al. 2022)", kSettingLowerOrderFinal,
       ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("dpmpp_3m", s, l, std::move(d),
                       dpm_solver_pp_plan(l, 3, false, o.lower_order_final));
       }},
      {"dpmpp_2m_sde", "DPM-Solver++(2M) SDE, one noise draw a step (Lu et al. 2022)",
       kSettingLowerOrderFinal, ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("dpmpp_2m_sde", s, l, std::move(d),
                       dpm_solver_pp_plan(l, 2, true, o.lower_order_final));
       }},
      {"unipc", "UniPC, predictor and corrector (Zhao et al. 2023)",
       kSettingOrder | kSettingUnipcVariant | kSettingLowerOrderFinal, ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("unipc", s, l, std::move(d),
                       unipc_plan(l, o.order, o.unipc_variant == "bh2", o.lower_order_final));
       }},
      {"euler", "Euler's method on the probability-flow ODE (Karras et al. 2022)", 0,
       ReferenceSampler::None,
       [](const SolverOptions&, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("euler", s, l, std::move(d), ddim_plan(l, 0.0));
       }},
      {"heun",
       "Heun's method, two model calls a step, with optional churn (Karras et al. 2022, Alg. 2)",
       kSettingsChurn, ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d,
          const NS& ns) { return make_heun_solver(s, l, std::move(d), ns, o); }},
      {"euler_a", "Euler ancestral, one noise draw a step (Karras et al. 2022)", 0,
       ReferenceSampler::None,
       [](const SolverOptions&, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("euler_a", s, l, std::move(d), euler_ancestral_plan(l));
       },
       0, false, "ancestral"},
      {"dpm",
       "consistency_models' midpoint method (DPM-Solver-2 style), two model calls a step, "
       "with optional churn",
       kSettingsChurn, ReferenceSampler::None,
       [](const SolverOptions& o, const StepSchedule& s, const Levels& l, Denoiser d,
          const NS& ns) { return make_karras_dpm_solver(s, l, std::move(d), ns, o); }},
      {"multistep",
       "consistency sampling (Song et al. 2023, Alg. 1): x_0, then fresh noise to the next "
       "level; with --ts",
       0, ReferenceSampler::None,
       [](const SolverOptions&, const StepSchedule& s, const Levels& l, Denoiser d, const NS& ns) {
         return linear("multistep", s, l, std::move(d), consistency_plan(l, ns.level(0).sigma_k()));
       }},
      {"onestep", "one model call from the first level: a consistency model's x_0", 0,
       ReferenceSampler::None,
       [](const SolverOptions&, const StepSchedule& s, const Levels& l, Denoiser d, const NS& ns) {
         return linear("onestep", s, l, std::move(d), consistency_plan(l, ns.level(0).sigma_k()));
       },
       1},
      {"progdist", "Euler steps ending at the lowest level, not at sigma 0 (consistency_models')",
       0, ReferenceSampler::None,
       [](const SolverOptions&, const StepSchedule& s, const Levels& l, Denoiser d, const NS&) {
         return linear("progdist", s, l, std::move(d), ddim_plan(l, 0.0));
       },
       0, true},
  };
  return rows;
}

std::string sampler_names() {
  std::vector<std::string> names;
  for (const SamplerRow& row : sampler_registry()) names.push_back(row.name);
  return join(names, ", ");
}

const SamplerRow& find_sampler(const std::string& name) {
  for (const SamplerRow& row : sampler_registry()) {
    if (name == row.name || (row.alias != nullptr && name == row.alias)) return row;
  }
  throw ConfigError(
      str("`sampler`: unknown sampler '", name, "' (expected one of ", sampler_names(), ")"));
}

std::string setting_names(unsigned bits) {
  std::vector<std::string> names;
  for (const SolverSettingRow& s : solver_settings()) {
    if (bits & s.bit) names.push_back(s.name);
  }
  return names.empty() ? "none" : join(names, ", ");
}

void check_solver_settings(const SamplerRow& row, const SolverOptions& options) {
  for (const SolverSettingRow& s : solver_settings()) {
    if ((row.settings & s.bit) && s.check) s.check(options);
  }
}

std::vector<std::string> unread_settings(const SamplerRow& row, const SolverOptions& options) {
  const SolverOptions defaults;
  std::vector<std::string> out;
  for (const SolverSettingRow& s : solver_settings()) {
    if (!(row.settings & s.bit) && s.value(options) != s.value(defaults)) {
      out.push_back(str("`", s.name, "` ", s.value(options)));
    }
  }
  return out;
}

}  // namespace idiff
