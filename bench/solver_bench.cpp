// idiff_solver_bench: sampling accuracy against model calls. For one checkpoint, x_T drawn
// at --t_start is solved by every solver of the sampling engine on every fixed step
// schedule at each budget of model calls (--nfe), and by the best --tune_best solvers of
// each budget on a schedule tuned for the model (tune_steps.h; fitted on other x_T than the
// ones measured); the error is the RMS
// difference of the final samples ([-1, 1] scale, no clipping, no 8-bit rounding) from the
// ground truth, DDIM through every step of the process from the same x_T. The ground truth's
// own error is estimated against a second fine solver. With --diffusers, diffusers'
// DPM-Solver++ and UniPC are measured by bench/diffusers_solver_bench.py on the same model
// (the Python reference's UNet, from --reference), x_T and ground truth.
//
//   idiff_solver_bench --model_path ema.pt --noise_schedule cosine [--diffusers
//       --reference .ref/improved-diffusion] [--nfe 5,10,20] [--num_samples 16]
#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/diffusion/sampling/tune_steps.h"
#include "idiff/drivers/image_sample.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/inspect/infer_config.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

namespace idiff {
namespace {

struct Settings {
  std::string model_path, noise_schedule = "cosine", nfe = "5,10,20", reference, python;
  std::string sigma_max = "0";  // caps of the karras and logsnr schedules (0: none)
  int64_t diffusion_steps = 1000, num_samples = 16, calibration = 8, num_heads = 4;
  int64_t t_start = 899, iterations = 4, tune_best = 2;
  bool diffusers = false, rescale_timesteps = true, clip_denoised = false;
};

struct Variant {
  std::string label;  // "dpmpp_2m" or "unipc bh1 3"
  SolverOptions options;
};

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (const char* name : {"ddim", "heun", "dpmpp_2m", "dpmpp_3m"}) {
    SolverOptions o;
    o.name = name;
    out.push_back({name, o});
  }
  for (const auto& [variant, order] :
       std::vector<std::pair<std::string, int64_t>>{{"bh2", 2}, {"bh1", 3}, {"bh2", 3}}) {
    SolverOptions o;
    o.name = "unipc";
    o.unipc_variant = variant;
    o.order = order;
    out.push_back({str("unipc ", variant, " ", order), o});
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double rms(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).mean().sqrt().item<double>();
}

int run(const Settings& st) {
  const TensorMap sd = load_tensor_file(st.model_path);
  InferredModel inferred = infer_model_config(sd);
  IDIFF_REQUIRE(inferred.is_unet && !inferred.super_res, ConfigError, st.model_path,
                ": not an improved-diffusion UNet checkpoint");
  ModelConfig mc = inferred.config;
  mc.num_heads = st.num_heads;
  DiffusionConfig dc;
  dc.learn_sigma = mc.learn_sigma;
  dc.noise_schedule = st.noise_schedule;
  dc.diffusion_steps = st.diffusion_steps;
  dc.rescale_timesteps = st.rescale_timesteps;
  const c10::Device cpu(c10::kCPU);
  UNetModel model = load_model(mc, false, st.model_path, cpu);
  c10::InferenceMode inference;
  const ModelFn fn = [&model](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t);
  };
  SampleConfig base;
  base.clip_denoised = st.clip_denoised;
  base.steps = 1;
  const auto setup_of = [&](const SolverOptions& o, const StepSchedule& s) {
    SamplerSetup setup = sampler_setup(base, dc);
    setup.solver = o;
    setup.schedule = s;
    return setup;
  };
  const NoiseSchedule ns = noise_schedule_of(sampler_setup(base, dc).params);
  const std::vector<int64_t> shape = {st.num_samples, mc.image_channels, mc.image_size,
                                      mc.image_size};
  const at::Tensor x_T = at::randn(shape, at::make_generator<at::CPUGeneratorImpl>(1));
  const at::Tensor x_cal =
      at::randn({st.calibration, mc.image_channels, mc.image_size, mc.image_size},
                at::make_generator<at::CPUGeneratorImpl>(2));
  const auto solve = [&](const SolverOptions& o, const StepSchedule& s, const at::Tensor& x) {
    const auto solver = make_solver(setup_of(o, s), fn);
    return run_sampler(*solver, x, {});
  };
  // Ground truth: DDIM through every step from t_start; a check: DPM-Solver++ 3M, 500 steps.
  const StepSchedule every = every_step_schedule(static_cast<double>(st.t_start));
  SolverOptions ddim;
  ddim.name = "ddim";
  auto t0 = std::chrono::steady_clock::now();
  const at::Tensor truth = solve(ddim, every, x_T);
  const at::Tensor truth_cal = solve(ddim, every, x_cal);
  std::printf("ground truth: DDIM, %lld steps from t=%lld, %lld + %lld samples, %.1f s\n",
              static_cast<long long>(every.num_steps()), static_cast<long long>(st.t_start),
              static_cast<long long>(st.num_samples), static_cast<long long>(st.calibration),
              seconds_since(t0));
  SolverOptions fine;
  fine.name = "dpmpp_3m";
  const at::Tensor check =
      solve(fine, make_step_schedule(ns, "logsnr", 500, static_cast<double>(st.t_start)), x_T);
  std::printf("ground truth vs DPM-Solver++ 3M with 500 logsnr steps: RMS %.2e\n\n",
              rms(truth, check));

  const std::vector<int64_t> budgets = parse_int_list(st.nfe, "--nfe");
  struct Row {
    std::string solver, schedule;
    std::map<int64_t, double> error, seconds;
  };
  std::vector<Row> rows;
  std::map<int64_t, std::pair<double, std::string>> best;  // per budget
  const auto record = [&](Row& row, int64_t nfe, double e, double s) {
    row.error[nfe] = e;
    row.seconds[nfe] = s;
    auto& b = best[nfe];
    if (b.second.empty() || e < b.first) b = {e, row.solver + ", " + row.schedule};
  };
  const std::vector<Variant> all = variants();
  const auto steps_for = [](const Variant& v, int64_t nfe) {
    return v.options.name == "heun" ? (nfe + 1) / 2 : nfe;  // Heun: two calls a step, one last
  };
  // The schedules: each spacing, and karras and logsnr under each --sigma_max cap.
  std::vector<std::pair<std::string, double>> schedules;
  for (const std::string sched : {"linspace", "trailing", "karras", "logsnr"}) {
    for (double cap : parse_double_list(st.sigma_max, "--sigma_max")) {
      if (cap == 0 || sched == "karras" || sched == "logsnr") schedules.emplace_back(sched, cap);
    }
  }
  for (const Variant& v : all) {
    for (const auto& [sched, cap] : schedules) {
      Row row{v.label, cap > 0 ? str(sched, ", sigma_max ", cap) : sched, {}, {}};
      for (int64_t nfe : budgets) {
        StepSchedule s;
        try {
          s = make_step_schedule(ns, sched, steps_for(v, nfe), static_cast<double>(st.t_start),
                                 true, cap);
        } catch (const ConfigError&) {
          continue;
        }
        t0 = std::chrono::steady_clock::now();
        const at::Tensor x = solve(v.options, s, x_T);
        record(row, nfe, rms(x, truth), seconds_since(t0) / static_cast<double>(st.num_samples));
      }
      rows.push_back(row);
    }
  }
  // The reference's DDIM (--use_ddim True --timestep_respacing N) at each budget and at 50.
  {
    Row row{"ddim (the reference's)", "respacing N", {}, {}};
    std::vector<int64_t> with50 = budgets;
    if (std::find(with50.begin(), with50.end(), 50) == with50.end()) with50.push_back(50);
    for (int64_t nfe : with50) {
      if (st.t_start != st.diffusion_steps - 1) break;  // respacing starts at the last step
      t0 = std::chrono::steady_clock::now();
      const at::Tensor x = solve(ddim, respacing_schedule(st.diffusion_steps, str(nfe)), x_T);
      const double e = rms(x, truth);
      if (std::count(budgets.begin(), budgets.end(), nfe)) {
        record(row, nfe, e, seconds_since(t0) / static_cast<double>(st.num_samples));
      } else {
        std::printf("the reference's DDIM with %lld respaced steps: RMS %.2e\n",
                    static_cast<long long>(nfe), e);
      }
    }
    if (!row.error.empty()) rows.push_back(row);
  }
  // Tuned schedules for the --tune_best solvers with the lowest error at each budget, fitted
  // on the calibration x_T (not the measured ones).
  std::map<std::string, Row> tuned;
  for (int64_t nfe : budgets) {
    std::vector<std::pair<double, size_t>> ranking;
    for (size_t k = 0; k < all.size(); ++k) {
      double e = 1e300;
      for (const Row& row : rows) {
        if (row.solver == all[k].label && row.error.count(nfe)) e = std::min(e, row.error.at(nfe));
      }
      ranking.emplace_back(e, k);
    }
    std::sort(ranking.begin(), ranking.end());
    for (int64_t r = 0; r < std::min<int64_t>(st.tune_best, ranking.size()); ++r) {
      const Variant& v = all[ranking[r].second];
      TuneOptions o;
      o.steps = steps_for(v, nfe);
      o.t_start = static_cast<double>(st.t_start);
      o.iterations = st.iterations;
      t0 = std::chrono::steady_clock::now();
      const TuneResult result = tune_step_schedule(ns, o, [&](const StepSchedule& trial) {
        return rms(solve(v.options, trial, x_cal), truth_cal);
      });
      std::printf("tuned %s for NFE %lld: %lld evaluations, %.0f s\n", v.label.c_str(),
                  static_cast<long long>(nfe), static_cast<long long>(result.evaluations),
                  seconds_since(t0));
      Row& row = tuned.emplace(v.label, Row{v.label, "tuned", {}, {}}).first->second;
      t0 = std::chrono::steady_clock::now();
      const at::Tensor x = solve(v.options, result.schedule, x_T);
      record(row, nfe, rms(x, truth), seconds_since(t0) / static_cast<double>(st.num_samples));
    }
  }
  for (auto& [label, row] : tuned) rows.push_back(row);

  // The table: RMS error (and milliseconds per image) at each budget.
  const auto print_rows = [&](const std::vector<Row>& table) {
    std::printf("| solver | schedule |");
    for (int64_t nfe : budgets) std::printf(" NFE %lld |", static_cast<long long>(nfe));
    std::printf("\n| --- | --- |");
    for (size_t i = 0; i < budgets.size(); ++i) std::printf(" --- |");
    std::printf("\n");
    for (const Row& row : table) {
      std::printf("| %s | %s |", row.solver.c_str(), row.schedule.c_str());
      for (int64_t nfe : budgets) {
        if (row.error.count(nfe)) {
          std::printf(" %.2e (%.0f ms) |", row.error.at(nfe), 1000 * row.seconds.at(nfe));
        } else {
          std::printf(" - |");
        }
      }
      std::printf("\n");
    }
    std::printf("\n");
  };
  print_rows(rows);
  std::map<int64_t, std::pair<double, std::string>> best_diffusers;
  std::vector<Row> diffusers_rows;
  if (st.diffusers) {
    const std::string dir = "/tmp/idiff_solver_bench";
    std::system(("mkdir -p " + dir).c_str());
    TensorMap io;
    io.insert("x_T", x_T.contiguous());
    io.insert("truth", truth.contiguous());
    save_tensor_file(dir + "/io.safetensors", io);
    const std::string cmd = str(
        st.python, " ", IDIFF_SOURCE_DIR, "/bench/diffusers_solver_bench.py --ref ", st.reference,
        " --model_path ", st.model_path, " --io ", dir, "/io.safetensors --t_start ", st.t_start,
        " --nfe ", st.nfe, " --flags '", inferred.flags, " --num_heads ", st.num_heads,
        " --noise_schedule ", st.noise_schedule, " --diffusion_steps ", st.diffusion_steps, "'",
        st.clip_denoised ? " --clip" : "", " > ", dir, "/diffusers.json");
    IDIFF_REQUIRE(std::system(cmd.c_str()) == 0, Error, "the diffusers benchmark failed: ", cmd);
    std::ifstream in(dir + "/diffusers.json");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      Row row{
          "diffusers " + j["solver"].get<std::string>(), j["schedule"].get<std::string>(), {}, {}};
      for (int64_t nfe : budgets) {
        const std::string key = std::to_string(nfe);
        if (!j["error"].contains(key) || !j["error"][key].is_number()) continue;  // null: diverged
        row.error[nfe] = j["error"][key].get<double>();
        row.seconds[nfe] = j["seconds"][key].get<double>();
        auto& b = best_diffusers[nfe];
        if (b.second.empty() || row.error[nfe] < b.first)
          b = {row.error[nfe], row.solver + ", " + row.schedule};
      }
      diffusers_rows.push_back(row);
    }
  }

  if (!diffusers_rows.empty()) print_rows(diffusers_rows);
  std::printf("best per budget (RMS error vs the ground truth):\n");
  for (int64_t nfe : budgets) {
    std::printf("  NFE %lld: idiff %.2e (%s)", static_cast<long long>(nfe), best[nfe].first,
                best[nfe].second.c_str());
    if (best_diffusers.count(nfe)) {
      std::printf("; diffusers %.2e (%s); ratio %.2f", best_diffusers[nfe].first,
                  best_diffusers[nfe].second.c_str(), best[nfe].first / best_diffusers[nfe].first);
    }
    std::printf("\n");
  }
  return 0;
}

}  // namespace
}  // namespace idiff

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines as they come, also into a file
  idiff::Settings st;
  st.python = IDIFF_BENCH_PYTHON;
  CLI::App app{"idiff_solver_bench: sampling error against model calls, per solver and schedule"};
  app.add_option("--model_path", st.model_path, "an improved-diffusion UNet checkpoint")
      ->required();
  app.add_option("--noise_schedule", st.noise_schedule, "its noise schedule")
      ->capture_default_str();
  app.add_option("--diffusion_steps", st.diffusion_steps, "its steps")->capture_default_str();
  app.add_option("--num_heads", st.num_heads, "its attention heads")->capture_default_str();
  app.add_option("--rescale_timesteps", st.rescale_timesteps, "as trained")->capture_default_str();
  app.add_option("--t_start", st.t_start, "where x_T is placed")->capture_default_str();
  app.add_option("--clip_denoised", st.clip_denoised,
                 "clip every x_0 prediction to [-1, 1] (ground truth included)")
      ->capture_default_str();
  app.add_option("--nfe", st.nfe, "budgets of model calls")->capture_default_str();
  app.add_option("--sigma_max", st.sigma_max,
                 "caps of the karras and logsnr schedules, e.g. 0,80 (0: uncapped)")
      ->capture_default_str();
  app.add_option("--num_samples", st.num_samples, "x_T measured")->capture_default_str();
  app.add_option("--calibration", st.calibration, "other x_T the tuned schedules are fitted on")
      ->capture_default_str();
  app.add_option("--iterations", st.iterations, "sweeps of the schedule search")
      ->capture_default_str();
  app.add_option("--tune_best", st.tune_best, "solvers tuned at each budget (the best fixed ones)")
      ->capture_default_str();
  app.add_flag("--diffusers", st.diffusers, "also measure diffusers (needs --reference)");
  app.add_option("--reference", st.reference, "a checkout of openai/improved-diffusion");
  app.add_option("--python", st.python, "Python with torch and diffusers")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return idiff::run(st);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "idiff_solver_bench: error: %s\n", e.what());
    return 1;
  }
}
