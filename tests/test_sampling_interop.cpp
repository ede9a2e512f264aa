// idiff's DPM-Solver++ and UniPC against diffusers' schedulers configured alike
// (tests/py/diffusers_solvers.py: cosine schedule of 1000 steps, epsilon prediction,
// final_sigmas_type "zero", lower_order_final, no thresholding; from t = 899 with
// "linspace" spacing or Karras sigmas): the same toy model from the same x_T gives the same
// samples, and idiff's Karras schedule gives diffusers' sigmas.
#include "test_io_util.h"

#include "idiff/diffusion/beta_schedule.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/io/safetensors.h"

#include <ATen/ATen.h>

#include <cmath>

namespace idiff {
namespace {

TEST(SolverInterop, DpmSolverPlusPlusAndUniPcEqualDiffusers) {
  test::TempDir dir;
  const auto r = test::run_python_script("diffusers_solvers.py", {dir.file("d.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const TensorMap d = read_safetensors(dir.file("d.safetensors"));

  DiffusionParams params;
  params.betas = get_named_beta_schedule("cosine", 1000);
  const NoiseSchedule ns = noise_schedule_of(params);
  const at::Tensor x_T = (1.3 * at::sin(0.37 * at::arange(96, at::kDouble))).view({2, 3, 4, 4});
  struct Case {
    std::string name, solver;
    int64_t order;
    std::string variant;
  };
  const std::vector<Case> cases = {
      {"dpmpp_2m", "dpmpp_2m", 2, ""},          {"dpmpp_3m", "dpmpp_3m", 3, ""},
      {"dpmpp_2m_long", "dpmpp_2m", 2, ""},     {"dpmpp_3m_karras", "dpmpp_3m", 3, ""},
      {"unipc_bh2_2", "unipc", 2, "bh2"},       {"unipc_bh1_2", "unipc", 2, "bh1"},
      {"unipc_bh2_3_long", "unipc", 3, "bh2"},  {"unipc_bh2_2_karras", "unipc", 2, "bh2"},
      {"unipc_bh2_3_karras", "unipc", 3, "bh2"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const bool karras = c.name.find("karras") != std::string::npos;
    const at::Tensor timesteps = d.at(c.name + ".timesteps"), sigmas = d.at(c.name + ".sigmas");
    const int64_t n = timesteps.numel();
    StepSchedule s;
    for (int64_t i = 0; i < n; ++i) {
      // Karras: the exact level of each sigma (diffusers calls the model at it rounded).
      s.levels.push_back(karras ? ns.t_of_lambda(-std::log(sigmas[i].item<double>()))
                                : timesteps[i].item<double>());
    }
    // The end: sigma 0, or (final_sigmas_type "sigma_min") the level of the last sigma.
    const double last = sigmas[n].item<double>();
    s.levels.push_back(last == 0.0 ? kCleanLevel : ns.t_of_lambda(-std::log(last)));
    if (karras) {
      const StepSchedule mine = make_step_schedule(ns, "karras", n, 899);
      for (int64_t i = 0; i < n; ++i) {
        // diffusers' alpha_bar is float32, where 1 - alpha_bar_0 = 4e-5 keeps 3-4 digits: its
        // sigma_min, and so its sigmas, are that far from the float64 ones.
        EXPECT_NEAR(ns.level(mine.levels[i]).sigma_k() / sigmas[i].item<double>(), 1.0, 1e-3) << i;
      }
    }
    const ModelFn model = [karras](const at::Tensor& x, const at::Tensor& t) {
      const double scale = karras ? 1.0 : std::cos(t[0].item<double>() / 300.0);
      return 0.5 * at::tanh(x) * scale + 0.2 * x;
    };
    SolverOptions o;
    o.name = c.solver;
    o.lower_order_final = true;
    o.order = c.order;
    if (!c.variant.empty()) o.unipc_variant = c.variant;
    DenoiserOptions none;
    none.threshold = Threshold::None;
    auto solver = make_solver(o, params, s, model, none);
    const at::Tensor got = run_sampler(*solver, x_T, {});
    const at::Tensor want = d.at(c.name + ".sample");
    EXPECT_LT((got - want).abs().max().item<double>() / want.abs().max().item<double>(), 1e-4)
        << (got - want).abs().max().item<double>();
    EXPECT_GT((got - x_T).abs().max().item<double>(), 0.1);
  }
}

}  // namespace
}  // namespace idiff
