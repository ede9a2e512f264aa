#include "idiff/diffusion/sampling/tune_steps.h"

#include "idiff/common/error.h"

#include <cmath>
#include <limits>

namespace idiff {
namespace {

// Positions in log-SNR between the first level and t = 0, and back.
struct Positions {
  const NoiseSchedule& ns;
  double lam0, lam1;
  double of(double t) const {
    return t == kCleanLevel ? 1.0 : (ns.lambda(t) - lam0) / (lam1 - lam0);
  }
  double t_of(double p) const { return ns.t_of_lambda(lam0 + p * (lam1 - lam0)); }
};

}  // namespace

TuneResult tune_step_schedule(const NoiseSchedule& ns, const TuneOptions& o,
                              const ScheduleError& error_of, const TuneLog& log) {
  IDIFF_REQUIRE(o.iterations >= 0 && o.iterations <= 100, ConfigError,
                "`iterations` must lie in [0, 100], got ", o.iterations);
  TuneResult r;
  r.initial_error = std::numeric_limits<double>::infinity();
  const auto evaluate = [&](const StepSchedule& s) {
    ++r.evaluations;
    const double e = error_of(s);
    return std::isfinite(e) ? e : std::numeric_limits<double>::infinity();
  };
  for (const char* name : {"karras", "logsnr", "linspace", "trailing"}) {
    StepSchedule s;
    try {
      s = make_step_schedule(ns, name, o.steps, o.t_start, o.final_zero, o.sigma_max);
    } catch (const ConfigError&) {
      continue;  // e.g. linspace rounds two levels together
    }
    const double e = evaluate(s);
    r.fixed.emplace_back(name, e);
    if (log) log(str("  ", name, ": ", e));
    if (e < r.initial_error) {
      r.initial_error = e;
      r.initial_name = name;
      r.schedule = s;
    }
  }
  IDIFF_REQUIRE(!r.schedule.levels.empty(), ConfigError, "no schedule of ", o.steps,
                " steps fits this diffusion");
  r.error = r.initial_error;
  // The levels that move: 1 .. N-1 (the first is t_start; the last is sigma 0 or t = 0).
  const double t0 = r.schedule.levels.front();
  const Positions pos{ns, ns.lambda(t0), ns.lambda(0)};
  std::vector<double> p;
  for (double t : r.schedule.levels) p.push_back(pos.of(t));
  const size_t first = 1, last = r.schedule.levels.size() - 1;  // [first, last)
  const auto schedule_of = [&](const std::vector<double>& q) {
    StepSchedule s = r.schedule;
    for (size_t k = first; k < last; ++k) s.levels[k] = pos.t_of(q[k]);
    return s;
  };
  double move = 0.5;
  for (int64_t sweep = 0; sweep < o.iterations; ++sweep) {
    bool improved = false;
    for (size_t k = first; k < last; ++k) {
      // The upper neighbour of the last free level is t = 0 (position 1) when sampling goes
      // on to sigma 0.
      const double lo = p[k - 1], hi = k + 1 < p.size() ? p[k + 1] : 1.0;
      for (const double target : {lo, std::min(hi, 1.0)}) {
        std::vector<double> q = p;
        q[k] = p[k] + move * (target - p[k]);
        StepSchedule s;
        try {
          s = schedule_of(q);
          check_step_schedule(s, ns.num_timesteps(), "tuned schedule");
        } catch (const ConfigError&) {
          continue;
        }
        const double e = evaluate(s);
        if (e < r.error) {
          r.error = e;
          p = q;
          r.schedule = s;
          improved = true;
        }
      }
    }
    if (log) log(str("  sweep ", sweep + 1, ": ", r.error));
    if (!improved) move *= 0.5;
  }
  return r;
}

}  // namespace idiff
