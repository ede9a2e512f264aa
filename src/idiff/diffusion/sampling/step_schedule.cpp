#include "idiff/diffusion/sampling/step_schedule.h"

#include "idiff/common/error.h"
#include "idiff/diffusion/respace.h"
#include "idiff/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>

namespace idiff {

const char* step_schedule_names() {
  return "linspace, leading, trailing, karras, logsnr, or a respacing string (ddimN, 250, "
         "10,15,20)";
}

namespace {

std::vector<double> rounded(std::vector<double> v) {
  for (double& t : v) t = std::round(t);
  return v;
}

// n points from a to b inclusive, evenly spaced.
std::vector<double> linspace(double a, double b, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[i] = n == 1 ? a : a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1);
  }
  return v;
}

}  // namespace

StepSchedule make_step_schedule(const NoiseSchedule& ns, const std::string& name, int64_t steps,
                                double t_start, bool final_zero) {
  const int64_t T = ns.num_timesteps();
  IDIFF_REQUIRE(steps >= 1 && steps <= T, ConfigError, "`steps` must lie in [1, ", T,
                "] (the diffusion's steps), got ", steps);
  if (t_start < 0) t_start = static_cast<double>(T - 1);
  IDIFF_REQUIRE(t_start >= 1 && t_start <= static_cast<double>(T - 1), ConfigError,
                "`t_start` must lie in [1, ", T - 1, "], got ", t_start);
  // Points made by the spacing: the model times, plus the last level with final "min".
  const int64_t n = final_zero ? steps : steps + 1;
  std::vector<double> pts;
  if (name == "linspace" || name == "uniform") {
    pts = rounded(linspace(t_start, 0.0, n));
  } else if (name == "leading") {
    // diffusers' "leading": multiples of floor((t_start + 1) / n), from 0 up.
    const double ratio = std::floor((t_start + 1.0) / static_cast<double>(n));
    for (int64_t i = n - 1; i >= 0; --i) pts.push_back(static_cast<double>(i) * ratio);
  } else if (name == "trailing") {
    // diffusers' "trailing": from t_start down in steps of (t_start + 1) / n.
    const double ratio = (t_start + 1.0) / static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) {
      pts.push_back(std::round(t_start + 1.0 - static_cast<double>(i) * ratio) - 1.0);
    }
  } else if (name == "karras") {
    constexpr double rho = 7.0;
    const double hi = std::pow(ns.level(t_start).sigma_k(), 1.0 / rho);
    const double lo = std::pow(ns.level(0).sigma_k(), 1.0 / rho);
    for (double r : linspace(hi, lo, n)) pts.push_back(ns.t_of_lambda(-std::log(std::pow(r, rho))));
    pts.front() = t_start;  // exact, not through the inverse
  } else if (name == "logsnr") {
    for (double lam : linspace(ns.lambda(t_start), ns.lambda(0), n))
      pts.push_back(ns.t_of_lambda(lam));
    pts.front() = t_start;
  } else {
    throw ConfigError(
        str("`schedule`: unknown schedule '", name, "' (expected ", step_schedule_names(), ")"));
  }
  StepSchedule s;
  s.levels = pts;
  if (final_zero) s.levels.push_back(kCleanLevel);
  check_step_schedule(s, T, str("`schedule` ", name, " with `steps` ", steps));
  return s;
}

StepSchedule respacing_schedule(int64_t num_timesteps, const std::string& section_counts) {
  std::set<int64_t> kept;
  if (section_counts.empty()) {
    for (int64_t t = 0; t < num_timesteps; ++t) kept.insert(t);
  } else {
    kept = space_timesteps(num_timesteps, section_counts);
  }
  StepSchedule s;
  for (auto it = kept.rbegin(); it != kept.rend(); ++it)
    s.levels.push_back(static_cast<double>(*it));
  s.levels.push_back(kCleanLevel);
  return s;
}

void check_step_schedule(const StepSchedule& s, int64_t num_timesteps, const std::string& what) {
  IDIFF_REQUIRE(s.levels.size() >= 2, ConfigError, what, ": a schedule needs at least one step");
  const double last = static_cast<double>(num_timesteps - 1);
  for (size_t i = 0; i < s.levels.size(); ++i) {
    const double t = s.levels[i];
    const bool clean_end = i + 1 == s.levels.size() && t == kCleanLevel;
    IDIFF_REQUIRE(clean_end || (std::isfinite(t) && t >= 0 && t <= last), ConfigError, what,
                  ": timestep ", t, " is outside [0, ", last, "]");
    IDIFF_REQUIRE(i == 0 || clean_end || t < s.levels[i - 1], ConfigError, what,
                  ": timesteps must decrease strictly, got ", s.levels[i - 1], " then ", t,
                  " (fewer steps, or a later start)");
  }
}

bool has_integer_levels(const StepSchedule& s) {
  for (double t : s.levels) {
    if (t != std::floor(t)) return false;
  }
  return true;
}

void write_steps_file(const std::string& path, const StepSchedule& s, const std::string& info) {
  nlohmann::json j = info.empty() ? nlohmann::json::object() : nlohmann::json::parse(info);
  j["levels"] = s.levels;
  j["steps"] = s.num_steps();
  write_bytes_atomically(path, j.dump(2) + "\n");
}

StepSchedule read_steps_file(const std::string& path, int64_t num_timesteps) {
  std::ifstream in(path);
  IDIFF_REQUIRE(in.good(), FileError, path, ": cannot open the steps file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw FileError(str(path, ": not a steps file (JSON with \"levels\"): ", e.what()));
  }
  IDIFF_REQUIRE(j.is_object() && j.contains("levels") && j["levels"].is_array(), FileError, path,
                ": not a steps file (expected a JSON object with a \"levels\" list)");
  StepSchedule s;
  for (const auto& v : j["levels"]) {
    IDIFF_REQUIRE(v.is_number(), FileError, path, ": \"levels\" must hold numbers");
    s.levels.push_back(v.get<double>());
  }
  if (j.contains("diffusion_steps")) {
    IDIFF_REQUIRE(j["diffusion_steps"] == num_timesteps, FileError, path, ": tuned for ",
                  j["diffusion_steps"].dump(), " diffusion steps, but the model has ",
                  num_timesteps);
  }
  try {
    check_step_schedule(s, num_timesteps, path);
  } catch (const ConfigError& e) {
    throw FileError(e.what());
  }
  return s;
}

}  // namespace idiff
