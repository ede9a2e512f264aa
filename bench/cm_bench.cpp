// idiff_cm_bench: a consistency model (idiff cm-train) against its teacher at 1-4 model calls.
// Held-out x_T (sigma_max times unit noise, fixed draws) is solved by the teacher's fine ODE
// solution (Heun, --fine_steps steps): the target every row is measured against, as the RMS
// difference of the final samples ([-1, 1] scale, clamped, before 8-bit rounding). Rows: the
// teacher's samplers (the reference's heun, euler, dpm and the engine's dpmpp_2m, dpmpp_3m,
// unipc, with clipping; each on the reference's rho = 7 Karras spacing or log-SNR-uniform
// levels, whichever is closer on other draws: the teacher's tuned steps) at each budget, and the
// student in one call (onestep) and in 2-4 calls (multistep), its ts searched greedily on
// other draws (the role of the reference's scripts/ternary_search.py: one index at a time,
// the best kept) against the same fine solution of those draws.
//
//   idiff_cm_bench --teacher_path ema.pt --student_path cm_ema.pt [--num_samples 16]
//                  [--steps 18] [--json out.json] [--grid out.png]
//   an improved-diffusion teacher: add --teacher_noise_schedule cosine --student_sigma_min S
//   (its engine solvers start at the student's sigma_max, 80, and clip x_0 as the reference)
//   progressive distillation's models (cm-train --training_mode progdist): --progdist PATH:N,
//   once per model, each sampled with its N Euler steps (--sampler progdist) — without
//   --student_path, these are the only students
#include "karras_solve.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/data/image_grid.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/step_schedule.h"
#include "idiff/io/atomic_file.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>

namespace idiff {
namespace {

struct Settings {
  std::string teacher_path, student_path, json, grid;
  std::vector<std::string> progdist;  // PATH:N
  int64_t num_samples = 16, search_samples = 16, num_heads = 4, num_head_channels = -1;
  int64_t fine_steps = 256, steps = 18, max_calls = 4;
  // An improved-diffusion teacher (noise_schedule set): its schedule; and the student's
  // sigma_min (cm-train clips it to the teacher's range: see the student's flags.json).
  std::string teacher_noise_schedule;
  int64_t teacher_diffusion_steps = 1000;
  double student_sigma_min = 0.002;
};

// An improved-diffusion teacher solved by the engine from x_T at sigma_k = `sigma_max` (the
// student's), its x_0 clipped as the reference samples; `unit` as for the Karras models.
KarrasRun solve_vp(const DiffusionParams& p, const ModelFn& fn, const at::Tensor& unit,
                   const std::string& sampler, int64_t steps, const std::string& schedule,
                   double sigma_max) {
  const NoiseSchedule ns = noise_schedule_of(p);
  const double t_start = ns.level_of_sigma_k(sigma_max).t;
  SolverOptions o;
  o.name = sampler;
  DenoiserOptions d;
  d.predict_xstart = p.model_mean_type == ModelMeanType::StartX;
  d.learned_variance =
      p.model_var_type == ModelVarType::Learned || p.model_var_type == ModelVarType::LearnedRange;
  d.threshold = Threshold::Clip;
  const auto solver =
      make_engine_solver(o, ns, make_step_schedule(ns, schedule, steps, t_start), fn, d);
  SampleOptions s;
  s.generator = at::make_generator<at::CPUGeneratorImpl>(2);
  const auto t0 = std::chrono::steady_clock::now();
  const double scale = ns.level(solver->schedule().levels.front()).sigma;
  const at::Tensor x = run_sampler(*solver, unit * scale, s).clamp(-1, 1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {x, secs / static_cast<double>(unit.size(0)), solver->total_model_calls()};
}

const char* const kTeacherSamplers[] = {"heun", "euler", "dpm", "dpmpp_2m", "dpmpp_3m", "unipc"};

// The student's multistep ts for 1..max_calls calls: from {0, steps - 1}, each call adds the
// index (of the `steps`-level spacing) that lowers the error on the search draws most.
std::map<int64_t, std::vector<int64_t>> search_ts(const KarrasParams& params, const ModelFn& fn,
                                                  const at::Tensor& unit, const at::Tensor& fine,
                                                  const Settings& st) {
  std::map<int64_t, std::vector<int64_t>> out;
  std::vector<int64_t> ts = {0, st.steps - 1};
  out[1] = ts;
  for (int64_t calls = 2; calls <= st.max_calls; ++calls) {
    double best = -1;
    std::vector<int64_t> best_ts;
    for (int64_t k = 1; k < st.steps - 1; ++k) {
      std::vector<int64_t> cand = ts;
      if (std::find(cand.begin(), cand.end(), k) != cand.end()) continue;
      cand.insert(std::upper_bound(cand.begin(), cand.end(), k), k);
      KarrasSampleOptions o;
      o.solver.name = "multistep";
      o.steps = st.steps;
      o.ts = cand;
      const double e = rms(solve_karras(params, fn, unit, o, 4).x, fine);
      if (best < 0 || e < best) best = e, best_ts = cand;
    }
    if (best_ts.empty()) break;
    ts = best_ts;
    out[calls] = ts;
  }
  return out;
}

std::string ts_text(const std::vector<int64_t>& ts) {
  std::string s;
  for (int64_t t : ts) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

// Progressive distillation's models, each with its N Euler steps from the same x_T (EDM's
// scalings, ending at sigma_min as the reference's sample_progdist).
void progdist_rows(const Settings& st, const ModelConfig& shape, const at::Tensor& held,
                   const at::Tensor& fine, nlohmann::json& report) {
  for (const std::string& spec : st.progdist) {
    const size_t colon = spec.rfind(':');
    IDIFF_REQUIRE(colon != std::string::npos, ConfigError, "--progdist wants PATH:N, got ", spec);
    const std::string path = spec.substr(0, colon);
    const int64_t steps = parse_int_list(spec.substr(colon + 1), "--progdist").at(0);
    const BenchModel model = load_bench_model(path, st.num_heads, st.num_head_channels);
    IDIFF_REQUIRE(model.config.image_size == shape.image_size &&
                      model.config.image_channels == shape.image_channels,
                  ConfigError, path, " makes images of another shape than the teacher");
    KarrasParams edm;
    edm.sigma_min = st.student_sigma_min;
    KarrasSampleOptions o;
    o.solver.name = "progdist";
    o.steps = steps;
    const KarrasRun r = solve_karras(edm, model.fn, held, o, 4);
    const double e = rms(r.x, fine);
    std::printf("| progdist model, %lld Euler steps (%s) | %.2e at %lld calls | %.4f s/image |\n",
                static_cast<long long>(steps), path.c_str(), e, static_cast<long long>(r.calls),
                r.seconds_per_image);
    report["progdist"][path] = {{"steps", steps}, {"calls", r.calls}, {"error", e}};
  }
}

int run(const Settings& st) {
  const bool vp = !st.teacher_noise_schedule.empty();
  const BenchModel teacher =
      load_bench_model(st.teacher_path, st.num_heads, st.num_head_channels, !vp);
  DiffusionConfig vp_config;
  vp_config.noise_schedule = st.teacher_noise_schedule;
  vp_config.diffusion_steps = st.teacher_diffusion_steps;
  vp_config.learn_sigma = teacher.config.learn_sigma;
  const DiffusionParams vp_params = vp ? diffusion_params(vp_config) : DiffusionParams{};
  c10::InferenceMode inference;
  const KarrasParams edm;  // sigma 0.002 .. 80, sigma_data 0.5
  KarrasParams cm = edm;
  cm.distillation = true;  // the boundary-condition scalings
  cm.sigma_min = st.student_sigma_min;
  const auto draws = [&](int64_t n, uint64_t seed) {
    const ModelConfig& c = teacher.config;
    return at::randn({n, c.image_channels, c.image_size, c.image_size},
                     at::make_generator<at::CPUGeneratorImpl>(seed));
  };
  const at::Tensor held = draws(st.num_samples, 1), search = draws(st.search_samples, 3);
  const auto teacher_solve = [&](const at::Tensor& unit, const std::string& sampler, int64_t steps,
                                 const std::string& schedule = "karras") {
    KarrasSampleOptions o;
    o.solver.name = sampler;
    o.steps = steps;
    o.schedule = schedule;
    return vp ? solve_vp(vp_params, teacher.fn, unit, sampler, steps, schedule, edm.sigma_max)
              : solve_karras(edm, teacher.fn, unit, o);
  };
  const KarrasRun fine = teacher_solve(held, "heun", st.fine_steps);
  const double fine_error = rms(teacher_solve(held, "heun", st.fine_steps / 2).x, fine.x);
  std::printf("fine solution: teacher heun, %lld steps; vs %lld steps: RMS %.2e\n\n",
              static_cast<long long>(st.fine_steps), static_cast<long long>(st.fine_steps / 2),
              fine_error);
  nlohmann::json report = {{"fine_steps", st.fine_steps}, {"fine_self_error", fine_error}};
  const KarrasRun search_fine = teacher_solve(search, "heun", st.fine_steps);

  std::printf("| model, sampler |");
  for (int64_t n = 1; n <= st.max_calls; ++n) std::printf(" %lld calls |", (long long)n);
  std::printf(" s/image |\n|---|");
  for (int64_t n = 0; n <= st.max_calls; ++n) std::printf("---|");
  std::printf("\n");
  std::map<int64_t, std::pair<double, std::string>> best;  // calls -> teacher's best
  std::map<int64_t, at::Tensor> best_x;
  for (const std::string sampler : kTeacherSamplers) {
    std::printf("| teacher, %s |", sampler.c_str());
    double secs = 0;
    for (int64_t nfe = 1; nfe <= st.max_calls; ++nfe) {
      const int64_t steps = steps_for(sampler, nfe);
      if (steps < 1 || teacher_solve(search.narrow(0, 0, 1), sampler, steps).calls != nfe) {
        std::printf(" - |");  // no step count spends exactly nfe calls
        continue;
      }
      // The teacher's step schedule chosen on the search draws (its "tuned steps").
      std::string schedule;
      double best_search = -1;
      for (const std::string name : {"karras", "logsnr"}) {
        const double e = rms(teacher_solve(search, sampler, steps, name).x, search_fine.x);
        if (best_search < 0 || e < best_search) best_search = e, schedule = name;
      }
      const KarrasRun r = teacher_solve(held, sampler, steps, schedule);
      const double e = rms(r.x, fine.x);
      std::printf(" %.2e%s |", e, schedule == "karras" ? "" : " (logsnr)");
      report["teacher"][sampler][std::to_string(nfe)] = e;
      secs = r.seconds_per_image;
      auto& b = best[nfe];
      if (b.second.empty() || e < b.first) b = {e, sampler + " " + schedule}, best_x[nfe] = r.x;
    }
    std::printf(" %.4f |\n", secs);
  }

  progdist_rows(st, teacher.config, held, fine.x, report);
  if (st.student_path.empty()) {
    if (!st.json.empty()) write_bytes_atomically(st.json, report.dump(2) + "\n");
    return 0;
  }
  const BenchModel student = load_bench_model(st.student_path, st.num_heads, st.num_head_channels);
  IDIFF_REQUIRE(teacher.config.image_size == student.config.image_size &&
                    teacher.config.image_channels == student.config.image_channels,
                ConfigError, "the teacher and the student make images of different shapes");
  const auto ts = search_ts(cm, student.fn, search, search_fine.x, st);
  std::map<int64_t, double> student_error;
  at::Tensor one_call;
  std::printf("| student, onestep / multistep |");
  double secs = 0;
  for (int64_t nfe = 1; nfe <= st.max_calls; ++nfe) {
    KarrasSampleOptions o;
    o.solver.name = nfe == 1 ? "onestep" : "multistep";
    o.steps = st.steps;
    if (nfe > 1) o.ts = ts.at(nfe);
    const KarrasRun r = solve_karras(cm, student.fn, held, o, 4);
    student_error[nfe] = rms(r.x, fine.x);
    if (nfe == 1) one_call = r.x, secs = r.seconds_per_image;
    std::printf(" %.2e |", student_error[nfe]);
    report["student"][std::to_string(nfe)] = {{"error", student_error[nfe]},
                                              {"ts", ts_text(ts.at(nfe))}};
  }
  std::printf(" %.4f |\n\nstudent's ts (of %lld levels):", secs, (long long)st.steps);
  for (const auto& [n, t] : ts) std::printf(" %lld calls %s;", (long long)n, ts_text(t).c_str());
  std::printf("\nteacher's best:");
  for (const auto& [n, b] : best) {
    std::printf(" %lld calls %s %.2e;", (long long)n, b.second.c_str(), b.first);
    report["teacher_best"][std::to_string(n)] = {{"error", b.first}, {"sampler", b.second}};
  }
  std::printf("\n");
  // The goals: one call at most the teacher's best three, two at most its best four.
  for (const auto& [calls, against] : std::map<int64_t, int64_t>{{1, 3}, {2, 4}}) {
    if (best.count(against) == 0 || student_error.count(calls) == 0) continue;
    std::printf("student at %lld calls / teacher's best at %lld: %.2fx\n", (long long)calls,
                (long long)against, student_error[calls] / best[against].first);
  }
  if (!st.json.empty()) write_bytes_atomically(st.json, report.dump(2) + "\n");
  if (!st.grid.empty() && best_x.count(3) > 0) {
    // Rows: the teacher's fine solution, the student in one call, the teacher's best 3 calls.
    const int64_t n = std::min<int64_t>(8, st.num_samples);
    const at::Tensor rows =
        at::cat({fine.x.narrow(0, 0, n), one_call.narrow(0, 0, n), best_x[3].narrow(0, 0, n)});
    write_png(st.grid, make_grid(samples_to_uint8(rows), n));
    std::printf("grid (fine teacher / student, 1 call / teacher's best, 3 calls): %s\n",
                st.grid.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace idiff

int main(int argc, char** argv) {
  idiff::Settings st;
  CLI::App app{"idiff_cm_bench: a consistency model against its teacher at 1-4 model calls"};
  app.add_option("--teacher_path", st.teacher_path, "the EDM teacher")->required();
  app.add_option("--student_path", st.student_path, "the consistency model");
  app.add_option("--progdist", st.progdist,
                 "PATH:N, a progressive distillation's model and its Euler steps (repeatable)");
  app.add_option("--num_samples", st.num_samples, "held-out x_T measured")->capture_default_str();
  app.add_option("--search_samples", st.search_samples, "x_T the student's ts are searched on")
      ->capture_default_str();
  app.add_option("--steps", st.steps, "levels the student's ts index (its --start_scales)")
      ->capture_default_str();
  app.add_option("--fine_steps", st.fine_steps, "Heun steps of the fine solution")
      ->capture_default_str();
  app.add_option("--max_calls", st.max_calls, "the largest budget of model calls measured")
      ->capture_default_str();
  app.add_option("--num_heads", st.num_heads, "the models' heads")->capture_default_str();
  app.add_option("--num_head_channels", st.num_head_channels, "the models' head width")
      ->capture_default_str();
  app.add_option("--teacher_noise_schedule", st.teacher_noise_schedule,
                 "an improved-diffusion teacher: its beta schedule (linear, cosine)");
  app.add_option("--teacher_diffusion_steps", st.teacher_diffusion_steps,
                 "an improved-diffusion teacher: its T")
      ->capture_default_str();
  app.add_option("--student_sigma_min", st.student_sigma_min,
                 "the student's sigma_min (its flags.json)")
      ->capture_default_str();
  app.add_option("--json", st.json, "also write the numbers here");
  app.add_option("--grid", st.grid, "a PNG of samples side by side");
  CLI11_PARSE(app, argc, argv);
  try {
    return idiff::run(st);
  } catch (const std::exception& e) {
    std::cerr << "idiff_cm_bench: " << e.what() << "\n";
    return 1;
  }
}
