// GaussianDiffusion against the reference with real models: the fixture UNets (unet_tiny:
// learned range variance, cosine; unet_tiny_cc: class-conditional, fixed variance, linear)
// with their weights, for the base flags and --use_kl. q_sample, p_mean_variance, the VLB
// term, the prior term, every training loss term, and a 10-step DDIM trajectory must equal
// the *.diffusion_*.safetensors / *.ddim.safetensors files within 1e-4 relative.
#include "test_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <c10/core/GradMode.h>

namespace idiff {
namespace {

using test::load_fixture;
using test::load_json;

constexpr double kTol = 1e-4;

struct Fixture {
  nlohmann::json meta;
  UNetModel model{nullptr};
  ModelKwargs kwargs;
  at::Tensor x_start;

  ModelFn fn() {
    return [this](const at::Tensor& x, const at::Tensor& t) {
      return model->forward_kwargs(x, t, kwargs);
    };
  }
  DiffusionConfig config() const { return test::diffusion_config_from_flags(meta["flags"]); }
};

Fixture load_model_fixture(const std::string& name) {
  Fixture f;
  f.meta = load_json(name + ".json");
  f.model = create_model(test::model_config_from_flags(f.meta["flags"]));
  load_state_dict(*f.model, load_fixture(name + ".weights.safetensors"), name);
  f.model->eval();
  const TensorMap io = load_fixture(name + ".io.safetensors");
  if (io.contains("y")) f.kwargs.y = io.at("y");
  f.x_start = at::tanh(io.at("x"));  // the fixtures' x_0, in (-1, 1)
  return f;
}

class DiffusionParity : public ::testing::TestWithParam<std::string> {};

TEST_P(DiffusionParity, ForwardReverseBoundAndLosses) {
  const c10::NoGradGuard no_grad;
  Fixture f = load_model_fixture(GetParam());
  const ModelFn model = f.fn();
  for (const std::string variant : {"base", "kl"}) {
    SCOPED_TRACE(GetParam() + " " + variant);
    const TensorMap ref = load_fixture(GetParam() + ".diffusion_" + variant + ".safetensors");
    DiffusionConfig cfg = f.config();
    cfg.use_kl = variant == "kl";
    const SpacedDiffusion diffusion = create_gaussian_diffusion(cfg);
    const at::Tensor& t = ref.at("t");
    const at::Tensor& noise = ref.at("noise");
    const at::Tensor& x_t = ref.at("x_t");
    ASSERT_CLOSE(f.x_start, ref.at("x_start"), 1e-6);

    EXPECT_CLOSE(diffusion.q_sample(f.x_start, t, noise), x_t, kTol) << "q_sample";

    const PMeanVariance pmv = diffusion.p_mean_variance(model, x_t, t, /*clip_denoised=*/true);
    EXPECT_CLOSE(pmv.mean, ref.at("pmv_mean"), kTol) << "mean";
    EXPECT_CLOSE(pmv.log_variance, ref.at("pmv_log_variance"), kTol) << "log_variance";
    EXPECT_CLOSE(pmv.pred_xstart, ref.at("pmv_pred_xstart"), kTol) << "pred_xstart";
    EXPECT_CLOSE(pmv.variance, at::exp(ref.at("pmv_log_variance")), kTol) << "variance";

    const VbTerms vb = diffusion.vb_terms_bpd(model, f.x_start, x_t, t, /*clip_denoised=*/true);
    EXPECT_CLOSE(vb.output, ref.at("vb_output"), kTol) << "vb_output";
    EXPECT_CLOSE(diffusion.prior_bpd(f.x_start), ref.at("prior_bpd"), kTol) << "prior_bpd";

    const LossTerms losses = diffusion.training_losses(model, f.x_start, t, noise);
    std::vector<std::string> keys;
    for (const auto& [k, v] : losses) keys.push_back(k);
    auto expected_keys = f.meta["diffusion"][variant]["loss_keys"].get<std::vector<std::string>>();
    std::sort(expected_keys.begin(), expected_keys.end());
    EXPECT_EQ(keys, expected_keys);
    for (const auto& [k, v] : losses) {
      ASSERT_TRUE(ref.contains("loss_" + k)) << k;
      EXPECT_CLOSE(v, ref.at("loss_" + k), kTol) << "loss " << k;
    }
  }
}

TEST_P(DiffusionParity, DdimTrajectory) {
  Fixture f = load_model_fixture(GetParam());
  const TensorMap ref = load_fixture(GetParam() + ".ddim.safetensors");
  const auto& ddim = f.meta["diffusion"]["ddim"];
  DiffusionConfig cfg = f.config();
  cfg.timestep_respacing = ddim["timestep_respacing"].get<std::string>();
  const SpacedDiffusion diffusion = create_gaussian_diffusion(cfg);

  const at::Tensor map = ref.at("timestep_map");
  EXPECT_EQ(diffusion.timestep_map(),
            std::vector<int64_t>(map.data_ptr<int64_t>(), map.data_ptr<int64_t>() + map.numel()));

  SampleOptions opts;
  opts.noise = ref.at("noise");
  opts.clip_denoised = ddim["clip_denoised"].get<bool>();
  int64_t steps = 0;
  opts.progress = [&](const SampleStep& s) {
    EXPECT_EQ(s.t, diffusion.timestep_map()[diffusion.num_timesteps() - 1 - steps]);
    ++steps;
  };
  const at::Tensor sample =
      ddim_sample_loop(diffusion, f.fn(), opts.noise.sizes(), opts, ddim["eta"].get<double>());
  EXPECT_EQ(steps, 10);
  EXPECT_CLOSE(sample, ref.at("sample"), kTol);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DiffusionParity, ::testing::Values("unet_tiny", "unet_tiny_cc"));

}  // namespace
}  // namespace idiff
