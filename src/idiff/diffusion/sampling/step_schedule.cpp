#include "idiff/diffusion/sampling/step_schedule.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/diffusion/respace.h"
#include "idiff/io/atomic_file.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <set>

namespace idiff {

const char* step_schedule_names() {
  return "linspace, leading, trailing, karras, logsnr, or a respacing string (ddimN, 250, "
         "10,15,20)";
}

namespace {

// 2.2e+04, 157: a noise level for messages.
std::string format_sigma(double sigma) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", sigma);
  return buf;
}

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

// n points of the spacing `name` from t_start (the first point) down.
std::vector<double> spacing(const NoiseSchedule& ns, const std::string& name, double t_start,
                            int64_t n) {
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
  return pts;
}

}  // namespace

bool first_step_capped(const NoiseSchedule& ns, double t_start, int64_t steps, double sigma_max) {
  return sigma_max > 0 && steps >= 2 && ns.level(t_start).sigma_k() > sigma_max;
}

StepSchedule make_step_schedule(const NoiseSchedule& ns, const std::string& name, int64_t steps,
                                double t_start, bool final_zero, double sigma_max) {
  const int64_t T = ns.num_timesteps();
  IDIFF_REQUIRE(steps >= 1 && steps <= T, ConfigError, "`steps` must lie in [1, ", T,
                "] (the diffusion's steps), got ", steps);
  if (t_start < 0) t_start = static_cast<double>(T - 1);
  IDIFF_REQUIRE(t_start >= 1 && t_start <= static_cast<double>(T - 1), ConfigError,
                "`t_start` must lie in [1, ", T - 1, "], got ", t_start);
  IDIFF_REQUIRE(std::isfinite(sigma_max) && sigma_max >= 0, ConfigError,
                "`sigma_max` must be a positive number (0: no cap), got ", sigma_max);
  // Points made by the spacing: the model times, plus the last level with final "min".
  const int64_t n = final_zero ? steps : steps + 1;
  std::vector<double> pts;
  if (first_step_capped(ns, t_start, steps, sigma_max)) {
    // One step from t_start straight to the level of sigma_max, then the spacing from there.
    pts = spacing(ns, name, ns.t_of_lambda(-std::log(sigma_max)), n - 1);
    pts.insert(pts.begin(), t_start);
  } else {
    pts = spacing(ns, name, t_start, n);
  }
  StepSchedule s;
  s.levels = pts;
  if (final_zero) s.levels.push_back(kCleanLevel);
  check_step_schedule(s, T, str("`schedule` ", name, " with `steps` ", steps));
  return s;
}

StepSchedule consistency_schedule(const NoiseSchedule& ns, const std::vector<int64_t>& ts,
                                  int64_t steps, double rho) {
  IDIFF_REQUIRE(steps >= 2, ConfigError,
                "`ts` indexes `steps` levels: `steps` must be at least 2, got ", steps);
  IDIFF_REQUIRE(ts.size() >= 2, ConfigError,
                "`ts` needs at least two indices (the first level and steps - 1), got ", ts.size());
  const double T = static_cast<double>(ns.num_timesteps() - 1);
  const double hi = std::pow(ns.level(T).sigma_k(), 1.0 / rho);
  const double lo = std::pow(ns.level(0).sigma_k(), 1.0 / rho);
  StepSchedule s;
  for (size_t i = 0; i < ts.size(); ++i) {
    IDIFF_REQUIRE(ts[i] >= 0 && ts[i] < steps && (i == 0 || ts[i] > ts[i - 1]), ConfigError,
                  "`ts` must increase within [0, ", steps - 1, "] (`steps` ", steps, "), got ",
                  ts[i], " at position ", i + 1);
    const double r = static_cast<double>(ts[i]) / static_cast<double>(steps - 1);
    const double sigma = std::pow(hi + r * (lo - hi), rho);
    s.levels.push_back(i == 0 && ts[i] == 0 ? T : ns.t_of_lambda(-std::log(sigma)));
  }
  IDIFF_REQUIRE(ts.back() == steps - 1, ConfigError, "`ts` must end at steps - 1 = ", steps - 1,
                " (sigma_min, where sampling ends), got ", ts.back());
  s.levels.back() = kCleanLevel;
  return s;
}

ScheduleDefaults default_schedule(const NoiseSchedule& ns, int64_t steps) {
  // Measured from full noise with clipping on two trained cosine-schedule models (README,
  // "Sampling accuracy from full noise"): at 10 and 20 calls uniform log-SNR steps from
  // sigma 80 were the best fixed schedule for the multistep solvers, the uncapped Karras
  // spacing among the worst (from sigma 2e4 it spends half its steps where x_0 is the
  // data's mean); at 5 calls the trailing spacing was best on both.
  constexpr double kSigmaMax = 80.0;
  constexpr int64_t kFewSteps = 7;
  const double top = ns.level(static_cast<double>(ns.num_timesteps() - 1)).sigma_k();
  ScheduleDefaults d;
  if (steps <= kFewSteps) {
    d.name = "trailing";
    d.why = str("at ", kFewSteps,
                " steps or fewer, steps uniform in t from the last one "
                "(measured best from full noise with clipping, README)");
    d.sigma_max_why = str("at ", kFewSteps, " steps or fewer the first step starts at x_T itself");
  } else if (top > kSigmaMax) {
    d.name = "logsnr";
    d.sigma_max = kSigmaMax;
    d.sigma_max_why = str("x_T starts at sigma ", format_sigma(top),
                          ", where the model's x_0 prediction is the data's mean: one step goes "
                          "straight to sigma ",
                          kSigmaMax);
    d.why = d.sigma_max_why +
            ", the rest are uniform in log-SNR (measured best from full noise with clipping, "
            "README)";
  } else {
    d.name = "logsnr";
    d.why = "steps uniform in log-SNR (measured best from full noise with clipping, README)";
  }
  return d;
}

StepSchedule every_step_schedule(double t_start) {
  StepSchedule s;
  if (t_start != std::floor(t_start)) s.levels.push_back(t_start);
  for (double t = std::floor(t_start); t >= 0; --t) s.levels.push_back(t);
  s.levels.push_back(kCleanLevel);
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

StepSchedule read_steps_file(const std::string& path, int64_t num_timesteps, std::string* sampler) {
  // A steps file is a little JSON: a FIFO or a device is refused, never read, and so is a
  // file far larger than any schedule.
  constexpr uint64_t kMaxStepsFileBytes = uint64_t{1} << 22;
  const std::vector<uint8_t> bytes = read_regular_file(path, kMaxStepsFileBytes, "the steps file");
  return parse_steps_json(std::string(bytes.begin(), bytes.end()), path, num_timesteps, sampler);
}

StepSchedule parse_steps_json(const std::string& text, const std::string& path,
                              int64_t num_timesteps, std::string* sampler) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);  // the whole text: nothing after the object
  } catch (const std::exception& e) {
    throw FileError(str(path, ": not a steps file (one JSON object with \"levels\"): ", e.what()));
  }
  IDIFF_REQUIRE(j.is_object() && j.contains("levels") && j["levels"].is_array(), FileError, path,
                ": not a steps file (expected a JSON object with a \"levels\" list)");
  StepSchedule s;
  for (const auto& v : j["levels"]) {
    IDIFF_REQUIRE(v.is_number(), FileError, path, ": \"levels\" must hold numbers");
    s.levels.push_back(v.get<double>());
  }
  if (sampler != nullptr) {
    IDIFF_REQUIRE(!j.contains("sampler") || j["sampler"].is_string(), FileError, path,
                  ": \"sampler\" must be a name");
    *sampler = j.value("sampler", std::string());
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
  // Sampling starts from noise at a level as --t_start may name, and ends clean: at sigma 0
  // (the last level kCleanLevel) or at t = 0; a schedule that stops early would write noisy
  // images.
  IDIFF_REQUIRE(s.levels.front() >= 1, FileError, path, ": the first level must be a timestep of ",
                "at least 1 (where x_T is), got ", s.levels.front());
  IDIFF_REQUIRE(s.ends_clean() || s.levels.back() == 0, FileError, path,
                ": the last level must be ", kCleanLevel, " (sigma 0) or 0 (t = 0), got ",
                s.levels.back(), ": sampling would stop at a noisy level");
  return s;
}

}  // namespace idiff
