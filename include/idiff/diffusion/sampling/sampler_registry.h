// The samplers of the sampling engine, one row each: the name `--sampler` takes, one line of
// help, the settings of SolverOptions it reads, and how it is made. make_solver, the
// `--sampler` flag's help, `idiff sample --help`, the README's sampler table (a test
// compares them), the rank agreement and the log all read these rows, so a new sampler is
// its own file (its coefficients or Solver) and one row in sampler_registry.cpp.
//
// A setting (eta, order, ...) is defined and range-checked once, in the settings table
// here; a row names the ones it reads, and a setting given to a sampler that does not read
// it is reported (unread_settings) instead of being ignored.
#pragma once

#include "idiff/diffusion/sampling/denoiser.h"
#include "idiff/diffusion/sampling/noise_levels.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/diffusion/sampling/step_schedule.h"

#include <memory>
#include <string>
#include <vector>

namespace idiff {

// The settings of SolverOptions, as bits of SamplerRow::settings.
enum SolverSetting : unsigned {
  kSettingEta = 1u << 0,
  kSettingOrder = 1u << 1,
  kSettingUnipcVariant = 1u << 2,
  kSettingLowerOrderFinal = 1u << 3,
  kSettingSChurn = 1u << 4,
  kSettingSTmin = 1u << 5,
  kSettingSTmax = 1u << 6,
  kSettingSNoise = 1u << 7,
  kSettingsChurn = kSettingSChurn | kSettingSTmin | kSettingSTmax | kSettingSNoise,
};

struct SolverSettingRow {
  SolverSetting bit;
  const char* name;  // the flag without dashes
  const char* help;
  std::string (*value)(const SolverOptions&);  // as the flag spells it
  // ConfigError naming the flag when the value is out of range (nullptr: any value).
  void (*check)(const SolverOptions&);
};
const std::vector<SolverSettingRow>& solver_settings();

// The engine's solver over continuous noise levels (`levels`: the schedule's, on `ns`).
using EngineSolverFactory = std::unique_ptr<Solver> (*)(const SolverOptions& options,
                                                        const StepSchedule& schedule,
                                                        const std::vector<NoiseLevel>& levels,
                                                        Denoiser denoiser, const NoiseSchedule& ns);

// On integer timesteps ending at sigma 0, a row may run the reference's own sampler of a
// SpacedDiffusion instead (bit for bit the reference's results).
enum class ReferenceSampler { None, PSample, DdimSample };

struct SamplerRow {
  const char* name;
  const char* help;   // one line
  unsigned settings;  // SolverSetting bits it reads
  ReferenceSampler reference;
  EngineSolverFactory engine;  // nullptr: integer timesteps only (the reference's sampler)
  // consistency_models' samplers: > 0, the sampler takes exactly this many steps (onestep);
  // final_min, its schedule ends at the lowest level, not at sigma 0 (progdist).
  int64_t fixed_steps = 0;
  bool final_min = false;
  const char* alias = nullptr;  // another name --sampler takes for it (the reference's)
};

const std::vector<SamplerRow>& sampler_registry();

// The row named `name` or whose alias it is (consistency_models' `ancestral` is euler_a); a
// ConfigError naming `sampler` and listing the names otherwise.
const SamplerRow& find_sampler(const std::string& name);

// "ddpm, ddim, ...", for messages and help.
std::string sampler_names();

// "eta, order" (the settings of `bits`), "none" when there are none.
std::string setting_names(unsigned bits);

// Range checks of the settings `row` reads (the others are not looked at).
void check_solver_settings(const SamplerRow& row, const SolverOptions& options);

// The settings of `options` that differ from SolverOptions' defaults but `row` does not
// read, as "`eta` 0.5".
std::vector<std::string> unread_settings(const SamplerRow& row, const SolverOptions& options);

}  // namespace idiff
