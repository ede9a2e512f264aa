// Guidance: classifier guidance against guided-diffusion's classifier-guided trajectory
// (tests/data/adm_tiny.guided.safetensors), its gradient against finite differences, the
// sampling engine's condition_score against the reference's; the classifier-free
// combination in closed form and its label dropout; and a small model trained here whose
// guided samples show the asked class more often than unguided ones.
#include "test_adm_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/drivers/guided_models.h"
#include "idiff/drivers/image_train.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/model/factory.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>

namespace idiff {
namespace {

TEST(ClassifierGuidance, TrajectoryEqualsGuidedDiffusion) {
  UNetModel model = test::adm_tiny_model();
  EncoderUNetModel classifier = test::adm_tiny_classifier();
  const TensorMap io = test::load_fixture("adm_tiny.guided.safetensors");
  const at::Tensor y = io.at("y");
  const ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t, y);
  };
  torch::NoGradGuard no_grad;  // as the sampling loops run; the guidance turns gradients on
  const at::Tensor guided = test::adm_guided_trajectory(
      fn, classifier_cond_fn(classifier, y, io.at("classifier_scale").item<double>()), io,
      c10::Device("cpu"));
  EXPECT_CLOSE(guided, io.at("sample"), 1e-4);
  // The formula's classifier is nearly constant (its logits vary by 6e-4 between images),
  // so here the guidance moves the samples by 1.5e-6 only, below float32's resolution of
  // the comparison: GradientIsTheLogProbabilitysByFiniteDifferences and GuidedSamples* show
  // that the gradient is right and that it steers.
}

TEST(ClassifierGuidance, GradientIsTheLogProbabilitysByFiniteDifferences) {
  at::manual_seed(13);
  EncoderUNetOptions e;
  e.unet.model_channels = 32;
  e.unet.num_res_blocks = 1;
  e.unet.channel_mult = {1, 2};
  e.unet.attention_resolutions = {2};
  e.unet.num_head_channels = 32;
  e.unet.out_channels = 5;
  e.image_size = 8;
  e.pool = "attention";
  EncoderUNetModel classifier(e);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : classifier->parameters()) p.normal_(0, 0.2);
  }
  classifier->to(at::kDouble);
  classifier->eval();
  const at::Tensor x = at::randn({2, 3, 8, 8}, at::kDouble),
                   t = at::tensor({5.0, 600.0}, at::kDouble);
  const at::Tensor y = at::tensor({4, 1}, at::kLong);
  torch::NoGradGuard no_grad;
  const at::Tensor grad = classifier_cond_fn(classifier, y, 3.0)(x, t);
  auto log_p = [&](const at::Tensor& xs) {
    return at::log_softmax(classifier->forward(xs, t), -1).gather(1, y.unsqueeze(1)).sum();
  };
  for (int k = 0; k < 3; ++k) {
    const at::Tensor v = at::randn_like(x);
    const double h = 1e-5;
    const double fd = ((log_p(x + h * v) - log_p(x - h * v)) / (2 * h)).item<double>();
    EXPECT_NEAR((grad * v).sum().item<double>(), 3.0 * fd, 1e-6 * std::max(1.0, std::abs(fd)));
    EXPECT_GT(std::abs(fd), 1e-3);  // the classifier sees the image
  }
}

UNetModel small_model(bool null_label, bool learn_sigma, int64_t channels = 3) {
  UNetOptions o;
  o.in_channels = channels;
  o.out_channels = learn_sigma ? 2 * channels : channels;
  o.model_channels = 32;
  o.num_res_blocks = 1;
  o.channel_mult = {1, 2};
  o.num_classes = kNumClasses;
  o.null_label = null_label;
  o.use_scale_shift_norm = true;
  return UNetModel(o);
}

TEST(ClassifierFreeGuidance, CombinesConditionalAndNullLabelPredictions) {
  at::manual_seed(11);
  UNetModel model = small_model(/*null_label=*/true, /*learn_sigma=*/true);
  test::randomize_parameters(model->parameters());
  model->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 3, 16, 16}), t = at::tensor({3.0f, 700.0f});
  ModelKwargs kw;
  kw.y = at::tensor({3, 7}, at::kLong);
  const at::Tensor cond = model->forward(x, t, kw.y);
  const at::Tensor uncond = model->forward(x, t, at::full({2}, kNumClasses, at::kLong));
  EXPECT_GT(test::rel_error(cond, uncond), 1e-3);  // the label matters
  const at::Tensor out = classifier_free_model_fn(model, kw, 2.5)(x, t);
  const at::Tensor mean = uncond.narrow(1, 0, 3) + 2.5 * (cond - uncond).narrow(1, 0, 3);
  EXPECT_CLOSE(out.narrow(1, 0, 3), mean, 1e-5);
  EXPECT_CLOSE(out.narrow(1, 3, 3), cond.narrow(1, 3, 3), 1e-5);  // the conditional variance
  EXPECT_CLOSE(classifier_free_model_fn(model, kw, 1.0)(x, t), cond, 1e-5);

  UNetModel plain = small_model(/*null_label=*/false, /*learn_sigma=*/false);
  EXPECT_NE(test::error_of([&] {
              classifier_free_model_fn(plain, kw, 2.0);
            }).find("`class_dropout_prob`"),
            std::string::npos);
}

// The sampling engine guides through its denoiser (condition_score on x_0); over the
// reference's integer steps euler is DDIM, whose reference step guides epsilon itself.
TEST(ClassifierGuidance, EngineSolversGuideAsTheReferenceDdim) {
  at::manual_seed(12);
  UNetModel model = small_model(false, true);
  test::randomize_parameters(model->parameters());
  model->eval();
  EncoderUNetOptions e;
  e.unet.model_channels = 32;
  e.unet.num_res_blocks = 1;
  e.unet.channel_mult = {1, 2};
  e.unet.out_channels = 4;
  e.image_size = 16;
  EncoderUNetModel classifier(e);
  test::randomize_parameters(classifier->parameters());
  classifier->eval();
  ModelKwargs kw;
  kw.y = at::tensor({1, 2}, at::kLong);
  const ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t) {
    return model->forward(x, t, kw.y);
  };
  DiffusionConfig d;
  d.learn_sigma = true;
  d.rescale_timesteps = false;
  d.timestep_respacing = "8";  // integer steps: ddim is the reference's step
  SampleConfig s;
  SampleOptions opts;
  opts.noise = at::randn({2, 3, 16, 16});
  torch::NoGradGuard no_grad;
  auto sample = [&](const std::string& sampler, double scale) {
    s.sampler = sampler;
    SamplerSetup setup = sampler_setup(s, d);
    if (scale > 0) setup.denoiser.cond_fn = classifier_cond_fn(classifier, kw.y, scale);
    const auto solver = make_solver(setup, fn);
    return run_sampler(*solver, opts.noise, opts);
  };
  const at::Tensor ddim = sample("ddim", 30.0), euler = sample("euler", 30.0);
  EXPECT_CLOSE(euler, ddim, 1e-4);
  EXPECT_GT(test::rel_error(sample("ddim", 0.0), ddim), 1e-3);
}

TEST(ClassifierFreeGuidance, TrainingDropsTheAskedShareOfLabelsReproducibly) {
  const at::Tensor labels = at::arange(4000, at::kLong) % 7;
  const at::Tensor dropped = drop_class_labels(labels, 0.25, 9, 3);
  const at::Tensor is_null = dropped == kNumClasses;
  EXPECT_NEAR(is_null.to(at::kDouble).mean().item<double>(), 0.25, 0.03);
  EXPECT_TRUE(at::equal(dropped.masked_select(is_null.logical_not()),
                        labels.masked_select(is_null.logical_not())));
  EXPECT_TRUE(at::equal(drop_class_labels(labels, 0.25, 9, 3), dropped));   // a resumed run
  EXPECT_FALSE(at::equal(drop_class_labels(labels, 0.25, 9, 4), dropped));  // the next step
}

// Two classes of 8x8 grey images that differ in where the light is: class 0 bright on the
// left, class 1 on the right (the same mean, so only the class tells them apart).
at::Tensor two_class_images(const at::Tensor& labels, at::Generator& gen) {
  const int64_t n = labels.size(0);
  const at::Tensor left = at::cat({at::ones({4}), -at::ones({4})}).view({1, 1, 1, 8});
  const at::Tensor sign = (1 - 2 * labels.to(at::kFloat)).view({n, 1, 1, 1});
  return (0.7 * sign * left + 0.1 * at::randn({n, 1, 8, 8}, gen)).clamp(-1, 1);
}

// The class a sample shows: which half is brighter.
at::Tensor judged_class(const at::Tensor& x) {
  const at::Tensor halves = x.mean({1, 2}).view({x.size(0), 2, 4}).mean(2);
  return (halves.select(1, 1) > halves.select(1, 0)).to(at::kLong);
}

double share_of_class(const at::Tensor& x, int64_t wanted) {
  return (judged_class(x) == wanted).to(at::kDouble).mean().item<double>();
}

// A class-conditional model with a null label (class_dropout_prob 0.3) and a noisy-image
// classifier, both trained here for a few seconds; then guided samples show the asked class
// more often than unguided ones, with either kind of guidance.
TEST(Guidance, GuidedSamplesShowTheAskedClassMoreOften) {
  at::manual_seed(14);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(14);
  UNetModel model = small_model(/*null_label=*/true, /*learn_sigma=*/false, /*channels=*/1);
  EncoderUNetOptions e;
  e.unet.in_channels = 1;
  e.unet.model_channels = 32;
  e.unet.num_res_blocks = 1;
  e.unet.channel_mult = {1, 2};
  e.unet.out_channels = 2;
  e.unet.use_scale_shift_norm = true;
  e.image_size = 8;
  EncoderUNetModel classifier(e);
  DiffusionConfig d;
  d.rescale_timesteps = false;
  d.timestep_respacing = "20";
  const SpacedDiffusion full = create_gaussian_diffusion([&] {
    DiffusionConfig f = d;
    f.timestep_respacing = "";
    return f;
  }());
  torch::optim::Adam model_opt(model->parameters(), torch::optim::AdamOptions(2e-3));
  torch::optim::Adam cls_opt(classifier->parameters(), torch::optim::AdamOptions(2e-3));
  for (int step = 0; step < 150; ++step) {
    const at::Tensor labels = at::randint(0, 2, {32}, gen, at::kLong);
    const at::Tensor x0 = two_class_images(labels, gen);
    const at::Tensor t = at::randint(0, 1000, {32}, gen, at::kLong);
    const at::Tensor y =
        at::where(at::rand({32}, gen) < 0.3, at::full_like(labels, kNumClasses), labels);
    const ModelFn fn = [&](const at::Tensor& x, const at::Tensor& ts) {
      return model->forward(x, ts, y);
    };
    model_opt.zero_grad();
    full.training_losses(fn, x0, t, at::randn(x0.sizes(), gen)).at("loss").mean().backward();
    model_opt.step();
    cls_opt.zero_grad();
    const at::Tensor x_t = full.q_sample(x0, t, at::randn(x0.sizes(), gen));
    at::cross_entropy_loss(classifier->forward(x_t, t.to(at::kFloat)), labels).backward();
    cls_opt.step();
  }
  model->eval();
  classifier->eval();

  const int64_t n = 64, wanted = 1;
  const at::Tensor noise = at::randn({n, 1, 8, 8}, gen);
  const at::Tensor asked = at::full({n}, wanted, at::kLong);
  const at::Tensor null = at::full({n}, kNumClasses, at::kLong);
  torch::NoGradGuard no_grad;
  auto sample = [&](const std::string& sampler, const ModelFn& fn, const CondFn& cond_fn) {
    SampleConfig s;
    s.sampler = sampler;
    SamplerSetup setup = sampler_setup(s, d);
    setup.denoiser.cond_fn = cond_fn;
    const auto solver = make_solver(setup, fn);
    SampleOptions opts;
    opts.generator = gen;
    return run_sampler(*solver, noise, opts);
  };
  auto with_labels = [&](const at::Tensor& y) {
    return ModelFn(
        [&model, y](const at::Tensor& x, const at::Tensor& t) { return model->forward(x, t, y); });
  };
  ModelKwargs kw;
  kw.y = asked;
  // Classifier guidance of the unconditional (null-label) model: ancestral sampling moves
  // the mean, the deterministic solver the score.
  for (const std::string sampler : {"ddpm", "dpmpp_2m"}) {
    const double plain = share_of_class(sample(sampler, with_labels(null), {}), wanted);
    const double guided = share_of_class(
        sample(sampler, with_labels(null), classifier_cond_fn(classifier, asked, 10.0)), wanted);
    std::cout << sampler << " classifier guidance: " << plain << " -> " << guided << "\n";
    EXPECT_GT(guided, plain + 0.2) << sampler;
  }
  // Classifier-free guidance against the unconditional and the conditional model.
  const double uncond = share_of_class(sample("ddpm", with_labels(null), {}), wanted);
  const double cond = share_of_class(sample("ddpm", with_labels(asked), {}), wanted);
  const double cfg =
      share_of_class(sample("ddpm", classifier_free_model_fn(model, kw, 3.0), {}), wanted);
  std::cout << "classifier-free guidance: uncond " << uncond << ", cond " << cond << ", scale 3 "
            << cfg << "\n";
  EXPECT_GT(cfg, uncond + 0.2);
  EXPECT_GE(cfg, cond);
}

}  // namespace
}  // namespace idiff
