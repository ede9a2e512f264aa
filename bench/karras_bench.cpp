// idiff_karras_bench: sampling an EDM model (consistency_models' Karras denoiser) at equal
// model calls. x_T (sigma_max times unit noise, fixed draws) is solved by the reference's
// EDM Heun (karras_sample's default; 18 steps = 35 calls is EDM's CIFAR setting), Euler and
// its DPM-2 midpoint sampler, and by the engine's DPM-Solver++(2M), (3M) and UniPC, all on
// the reference's rho = 7 Karras levels, with the reference's clipping. The error is the
// RMS difference of the final samples ([-1, 1] scale, before 8-bit rounding) from a fine
// solution (Heun, --fine_steps steps), whose own error is estimated against Heun with half
// as many steps; the time is the wall time per image on this machine.
//
//   idiff_karras_bench --model_path ema.pt [--nfe 5,9,17,35] [--num_samples 16]
#include "karras_solve.h"

#include "idiff/common/strings.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <map>

namespace idiff {
namespace {

struct Settings {
  std::string model_path, nfe = "5,9,17,35";
  int64_t num_samples = 16, num_heads = 4, num_head_channels = -1, fine_steps = 256;
  bool clip_denoised = true;
};

int run(const Settings& st) {
  const BenchModel m = load_bench_model(st.model_path, st.num_heads, st.num_head_channels);
  c10::InferenceMode inference;
  const KarrasParams params;  // EDM: sigma 0.002 .. 80, sigma_data 0.5
  const at::Tensor unit =
      at::randn({st.num_samples, m.config.image_channels, m.config.image_size, m.config.image_size},
                at::make_generator<at::CPUGeneratorImpl>(1));
  const auto solve = [&](const std::string& sampler, int64_t steps) {
    KarrasSampleOptions o;
    o.solver.name = sampler;
    o.steps = steps;
    o.clip_denoised = st.clip_denoised;
    return solve_karras(params, m.fn, unit, o);
  };
  const KarrasRun fine = solve("heun", st.fine_steps);
  const KarrasRun half = solve("heun", st.fine_steps / 2);
  std::printf(
      "fine solution: heun, %lld steps (%lld calls), %lld samples; vs %lld steps: RMS "
      "%.2e\n\n",
      static_cast<long long>(st.fine_steps), static_cast<long long>(fine.calls),
      static_cast<long long>(st.num_samples), static_cast<long long>(st.fine_steps / 2),
      rms(half.x, fine.x));
  const std::vector<int64_t> budgets = parse_int_list(st.nfe, "--nfe");
  std::printf("| sampler |");
  for (int64_t n : budgets) std::printf(" %lld calls |", static_cast<long long>(n));
  std::printf(" s/image at %lld |\n| --- |", static_cast<long long>(budgets.back()));
  for (size_t i = 0; i <= budgets.size(); ++i) std::printf(" --- |");
  std::printf("\n");
  std::map<int64_t, std::pair<double, std::string>> best;
  for (const std::string sampler : {"heun", "euler", "dpm", "dpmpp_2m", "dpmpp_3m", "unipc"}) {
    std::printf("| %s |", sampler.c_str());
    double secs = 0;
    for (int64_t nfe : budgets) {
      const int64_t steps = steps_for(sampler, nfe);
      if (steps < 1) {
        std::printf(" - |");
        continue;
      }
      const KarrasRun r = solve(sampler, steps);
      const double e = rms(r.x, fine.x);
      std::printf(" %.2e (%lld) |", e, static_cast<long long>(r.calls));
      secs = r.seconds_per_image;
      auto& b = best[nfe];
      if (b.second.empty() || e < b.first) b = {e, sampler};
    }
    std::printf(" %.3f |\n", secs);
  }
  std::printf("\nbest at each budget:");
  for (const auto& [nfe, b] : best) {
    std::printf(" %lld calls %s %.2e;", static_cast<long long>(nfe), b.second.c_str(), b.first);
  }
  std::printf("\n");
  return 0;
}

}  // namespace
}  // namespace idiff

int main(int argc, char** argv) {
  idiff::Settings st;
  CLI::App app{"idiff_karras_bench: sampling error of an EDM model against model calls"};
  app.add_option("--model_path", st.model_path, "an EDM checkpoint (idiff edm-train)")->required();
  app.add_option("--nfe", st.nfe, "budgets of model calls")->capture_default_str();
  app.add_option("--num_samples", st.num_samples, "x_T measured")->capture_default_str();
  app.add_option("--num_heads", st.num_heads, "the model's heads")->capture_default_str();
  app.add_option("--num_head_channels", st.num_head_channels, "the model's head width")
      ->capture_default_str();
  app.add_option("--fine_steps", st.fine_steps, "Heun steps of the fine solution")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return idiff::run(st);
  } catch (const std::exception& e) {
    std::cerr << "idiff_karras_bench: " << e.what() << "\n";
    return 1;
  }
}
