// consistency_models' Karras denoiser and samplers against its own numbers
// (tests/data/cm_tiny.*, see tests/data/README.md): the small CM UNet with formula weights,
// denoise with both scalings, the EDM loss terms, and every sampler of karras_sample from the
// fixture's noise, through the one sampling loop.
#include "test_util.h"

#include "idiff/diffusion/consistency_losses.h"
#include "idiff/diffusion/karras_diffusion.h"
#include "idiff/diffusion/sampling/karras_edit.h"
#include "idiff/diffusion/sampling/karras_sample.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"
#include "idiff/model/unet.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

namespace idiff::test {
namespace {

// The cm_tiny network at `image_size` (attention at downsample rate 2), seed 41: the
// student of every case. The CM UNet's attention is guided-diffusion's new order.
UNetModel cm_tiny_model(int64_t image_size, uint64_t seed = 41) {
  ModelConfig m = model_config_from_flags(load_json("cm_tiny.json")["flags"]);
  m.image_size = image_size;
  m.attention_resolutions = std::to_string(image_size / 2);
  m.use_new_attention_order = true;
  UNetModel model = create_model(m);
  set_formula_weights(*model, seed);
  model->eval();
  return model;
}

ModelFn fn_of(UNetModel model, const at::Tensor& y) {
  return [model, y](const at::Tensor& x, const at::Tensor& t) mutable {
    return model->forward(x, t, y);
  };
}

KarrasParams params(bool distillation) {
  KarrasParams p;
  p.distillation = distillation;
  return p;
}

TEST(Karras, TheCmUnetHasTheReleasedKeysShapesAndCount) {
  const auto json = load_json("cm_tiny.json");
  UNetModel model = cm_tiny_model(32);
  const TensorMap sd = with_conv2d_attention(state_dict(*model));
  ASSERT_EQ(sd.size(), json["keys"].size());
  int64_t count = 0;
  size_t i = 0;
  for (const auto& [key, t] : sd) {
    EXPECT_EQ(key, json["keys"][i][0].get<std::string>());
    EXPECT_EQ(t.sizes().vec(), json["keys"][i][1].get<std::vector<int64_t>>());
    count += t.numel();
    ++i;
  }
  EXPECT_EQ(count, json["params"].get<int64_t>());
  // and the file layout loads back into the model.
  UNetModel other = cm_tiny_model(32, 7);
  load_state_dict(*other, sd, "cm_tiny");
  EXPECT_TRUE(at::equal(other->named_parameters()["middle_block.1.qkv.weight"],
                        model->named_parameters()["middle_block.1.qkv.weight"]));
}

// The released architectures (ImageNet-64 and LSUN-256): keys, order, shapes and parameter
// counts of consistency_models' files.
TEST(Karras, ReleasedArchitecturesHaveTheReferencesKeysShapesAndCounts) {
  const auto published = load_json("cm_published.json");
  for (const auto& [name, arch] : published["architectures"].items()) {
    ModelConfig m = model_config_from_flags(arch["full_flags"]);
    m.use_new_attention_order = true;
    const TensorMap sd = with_conv2d_attention(state_dict(*create_model(m)));
    ASSERT_EQ(sd.size(), arch["keys"].size()) << name;
    int64_t count = 0;
    size_t i = 0;
    for (const auto& [key, t] : sd) {
      EXPECT_EQ(key, arch["keys"][i][0].get<std::string>()) << name;
      EXPECT_EQ(t.sizes().vec(), arch["keys"][i][1].get<std::vector<int64_t>>()) << name << key;
      count += t.numel();
      ++i;
    }
    EXPECT_EQ(count, arch["params"].get<int64_t>()) << name;
  }
}

TEST(Karras, DenoiseMatchesTheReferenceWithBothScalings) {
  const TensorMap f = load_fixture("cm_tiny.denoise.safetensors");
  UNetModel model = cm_tiny_model(32);
  const ModelFn fn = fn_of(model, f.at("y"));
  const at::Tensor x = f.at("x_t"), sigma = f.at("sigma");
  c10::NoGradGuard no_grad;
  const KarrasDenoiser edm(params(false)), cm(params(true));
  EXPECT_TRUE(all_close(KarrasDenoiser::model_time(sigma), f.at("t_in"), 1e-6));
  const KarrasScalings se = edm.scalings(sigma), sc = cm.scalings(sigma);
  EXPECT_TRUE(all_close(se.c_skip, f.at("c_skip_edm"), 1e-6));
  EXPECT_TRUE(all_close(se.c_out, f.at("c_out_edm"), 1e-6));
  EXPECT_TRUE(all_close(se.c_in, f.at("c_in_edm"), 1e-6));
  EXPECT_TRUE(all_close(sc.c_skip, f.at("c_skip_cm"), 1e-6));
  EXPECT_TRUE(all_close(sc.c_out, f.at("c_out_cm"), 1e-6));
  const KarrasDenoised de = edm.denoise(fn, x, sigma), dc = cm.denoise(fn, x, sigma);
  // The output depends on the input: another x changes it well beyond the tolerance.
  EXPECT_GT(
      rel_error(model->forward(f.at("x_in") * 0.5, f.at("t_in"), f.at("y")), f.at("model_output")),
      1e-2);
  EXPECT_TRUE(all_close(de.model_output, f.at("model_output"), 1e-4));
  EXPECT_TRUE(all_close(de.denoised, f.at("denoised_edm"), 1e-4));
  EXPECT_TRUE(all_close(dc.denoised, f.at("denoised_cm"), 1e-4));
  // The boundary condition: at sigma_min a consistency model returns its input.
  EXPECT_TRUE(at::equal(dc.denoised[0], x[0]));
}

TEST(Karras, EdmLossTermsMatchTheReferenceForEveryWeightSchedule) {
  const TensorMap f = load_fixture("cm_tiny.edm_losses.safetensors");
  UNetModel model = cm_tiny_model(32);
  c10::NoGradGuard no_grad;
  for (const char* ws : {"karras", "uniform", "snr", "snr+1", "truncated-snr"}) {
    KarrasParams p;
    p.weight_schedule = ws;
    const LossTerms t = KarrasDenoiser(p).training_losses(fn_of(model, f.at("y")), f.at("x_start"),
                                                          f.at("sigma"), f.at("noise"));
    for (const char* term : {"xs_mse", "mse", "loss"}) {
      EXPECT_TRUE(all_close(t.at(term), f.at(std::string(ws) + "." + term), 1e-4)) << ws << term;
    }
  }
}

// Each run of cm_tiny.samplers: the draws come from the fixture's noise in order.
at::Tensor run_fixture_sampler(const TensorMap& f, const std::string& key, const std::string& name,
                               int64_t steps, double s_churn, bool distillation,
                               std::vector<int64_t> ts = {},
                               std::vector<at::Tensor>* traj = nullptr) {
  UNetModel model = cm_tiny_model(16);
  KarrasSampleOptions o;
  o.solver.name = name;
  o.solver.s_churn = s_churn;
  o.steps = steps;
  o.ts = std::move(ts);
  const at::Tensor noise = f.at("noise");
  auto next = std::make_shared<int64_t>(0);
  SampleOptions s;
  s.draw = [noise, next](at::IntArrayRef, const at::TensorOptions&) { return noise[(*next)++]; };
  const KarrasParams p = params(distillation);
  const auto solver = make_karras_solver(p, fn_of(model, f.at("y")), o);
  // The reference's sigmas are the solver's levels.
  const NoiseSchedule ns = karras_noise_schedule(p);
  if (o.ts.empty() && name != "onestep") {
    std::vector<double> sig;
    for (double t : solver->schedule().levels) sig.push_back(t < 0 ? 0.0 : ns.level(t).sigma_k());
    // progdist's file holds get_sigmas_karras(steps + 1) with its unused 0.
    const at::Tensor want = f.at(key + ".sigmas").to(at::kDouble);
    const int64_t n = std::min<int64_t>(want.size(0), static_cast<int64_t>(sig.size()));
    EXPECT_TRUE(all_close(at::tensor(sig, at::kDouble).narrow(0, 0, n), want.narrow(0, 0, n), 1e-6))
        << key;
  }
  const at::Tensor x_T = initial_noise(noise[0].sizes(), s) * karras_noise_scale(p, *solver);
  const auto on_step = [&](const SampleStep& st) {
    if (traj != nullptr && st.index + 1 < st.num_steps) {
      const double t = solver->schedule().levels[static_cast<size_t>(st.index + 1)];
      traj->push_back(st.sample / ns.level(t).alpha);  // x_ve at the start of the next step
    }
  };
  return run_sampler(*solver, x_T, s, {}, on_step).clamp(-1, 1);
}

TEST(Karras, EverySamplerMatchesKarrasSampleFromTheFixtureNoise) {
  const TensorMap f = load_fixture("cm_tiny.samplers.safetensors");
  struct Run {
    const char *key, *name;
    int64_t steps;
    double churn;
    bool distillation;
    std::vector<int64_t> ts;
  };
  const std::vector<Run> runs = {
      {"heun", "heun", 18, 0, false, {}},      {"heun_churn", "heun", 6, 40, false, {}},
      {"euler", "euler", 6, 0, false, {}},     {"ancestral", "ancestral", 6, 0, false, {}},
      {"dpm", "dpm", 6, 0, false, {}},         {"progdist", "progdist", 6, 0, false, {}},
      {"onestep", "onestep", 40, 0, true, {}}, {"multistep", "multistep", 40, 0, true, {0, 22, 39}},
  };
  c10::NoGradGuard no_grad;
  for (const Run& r : runs) {
    std::vector<at::Tensor> traj;
    const at::Tensor x =
        run_fixture_sampler(f, r.key, r.name, r.steps, r.churn, r.distillation, r.ts, &traj);
    EXPECT_TRUE(all_close(x, f.at(std::string(r.key) + ".sample"), 1e-4)) << r.key;
    // Where the reference's callback sees the state at the start of a step (no churn), the
    // trajectories agree step by step.
    if (f.contains(std::string(r.key) + ".traj_x") && r.churn == 0 && std::string(r.key) != "dpm" &&
        std::string(r.key) != "heun") {
      const at::Tensor want = f.at(std::string(r.key) + ".traj_x");
      for (size_t i = 0; i < traj.size(); ++i) {
        EXPECT_TRUE(all_close(traj[i], want[static_cast<int64_t>(i) + 1], 1e-4)) << r.key << i;
      }
    }
  }
}

TEST(Karras, InpaintingMatchesIterativeInpainting) {
  const TensorMap f = load_fixture("cm_tiny.inpaint.safetensors");
  UNetModel model = cm_tiny_model(32);
  const EditTask task = inpaint_task(f.at("images"), f.at("mask"));
  EXPECT_TRUE(all_close(task.known, f.at("images_masked"), 1e-6));
  KarrasSampleOptions o;
  o.solver.name = "multistep";
  o.ts = {0, 22, 39};
  o.replace_fn = task.replace;
  // The draws: the starting point (unit noise times sigma_max), then each step's.
  const std::vector<at::Tensor> draws = {f.at("x") / 80.0, f.at("step_noise")[0],
                                         f.at("step_noise")[1]};
  auto next = std::make_shared<size_t>(0);
  SampleOptions s;
  s.draw = [draws, next](at::IntArrayRef, const at::TensorOptions&) { return draws[(*next)++]; };
  c10::NoGradGuard no_grad;
  const at::Tensor x =
      karras_sample(params(true), fn_of(model, f.at("y")), f.at("x").sizes(), o, s);
  EXPECT_EQ(*next, 3u);
  EXPECT_TRUE(all_close(x, f.at("sample"), 1e-4));
}

// Colorization and super-resolution have no fixture: what they keep is checked in closed
// form (the luminance; each 8x8 patch's mean) and what they take from x_0 (the rest).
TEST(Karras, ColorizeAndSuperresKeepWhatTheyShould) {
  at::manual_seed(4);
  const at::Tensor img = at::rand({2, 3, 16, 16}) * 2 - 1, x0 = at::rand({2, 3, 16, 16}) * 2 - 1;
  const at::Tensor grey = at::tensor({0.2989f, 0.5870f, 0.1140f}).view({1, 3, 1, 1});
  const auto luminance = [&](const at::Tensor& t) { return (t * grey).sum(1); };
  const EditTask c = colorize_task(img);
  EXPECT_TRUE(all_close(luminance(c.known), luminance(img), 1e-5));
  const at::Tensor mixed = c.replace(x0);
  EXPECT_TRUE(all_close(luminance(mixed), luminance(img), 1e-5));
  // The colour of x_0 stays: what is orthogonal to the grey axis.
  const at::Tensor g = grey / grey.norm();
  const auto chroma = [&](const at::Tensor& t) { return t - (t * g).sum(1, true) * g; };
  EXPECT_TRUE(all_close(chroma(mixed), chroma(x0), 1e-5));
  const EditTask s = superres_task(img);
  const auto means = [](const at::Tensor& t) { return at::avg_pool2d(t, 8); };
  EXPECT_TRUE(all_close(means(s.known), means(img), 1e-5));
  const at::Tensor up = s.replace(x0);
  EXPECT_TRUE(all_close(means(up), means(img), 1e-5));
  EXPECT_TRUE(all_close(up - at::upsample_nearest2d(means(up), {16, 16}),
                        x0 - at::upsample_nearest2d(means(x0), {16, 16}), 1e-5));
  EXPECT_NE(error_of([&] { make_edit_task("inpaint", img, at::Tensor()); }).find("`mask`"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              inpaint_task(img, at::ones({1, 1, 8, 8}));
            }).find("the mask is"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              superres_task(at::rand({1, 3, 12, 12}));
            }).find("multiple of 8"),
            std::string::npos);
}

// Consistency distillation (the teacher's Heun step) and training (the Euler step with x_0),
// every loss norm of the fixture; student 41, target 42, teacher 43.
TEST(Karras, ConsistencyLossesMatchTheReference) {
  const TensorMap f = load_fixture("cm_tiny.consistency.safetensors");
  const at::Tensor y = f.at("y");
  const ModelFn student = fn_of(cm_tiny_model(16, 41), y), target = fn_of(cm_tiny_model(16, 42), y),
                teacher = fn_of(cm_tiny_model(16, 43), y);
  KarrasParams p = params(true);
  p.weight_schedule = "uniform";
  const KarrasDenoiser cm(p), edm(params(false));
  c10::NoGradGuard no_grad;
  for (const char* norm : {"l2", "l1", "l2-32"}) {
    for (const std::string kind : {"cd", "ct"}) {
      const ConsistencyTerms r =
          consistency_losses(cm, student, target, kind == "cd" ? teacher : ModelFn(), edm,
                             f.at("x_start"), 40, f.at("indices"), f.at("noise"), norm);
      EXPECT_TRUE(all_close(r.t, f.at("t"), 1e-6));
      EXPECT_TRUE(all_close(r.t2, f.at("t2"), 1e-6));
      EXPECT_TRUE(all_close(r.distiller, f.at("student"), 1e-4));
      EXPECT_TRUE(all_close(r.x_t2, f.at(kind + ".x_t2"), 1e-4)) << kind;
      EXPECT_TRUE(all_close(r.target, f.at(kind + ".target"), 1e-4)) << kind;
      EXPECT_TRUE(all_close(r.loss, f.at(kind + "." + norm + ".loss"), 1e-4)) << kind << norm;
    }
  }
  // pseudo-Huber (iCT) in closed form: sqrt(d^2 + c^2) - c, c = 0.00054 sqrt(3 * 16 * 16).
  const ConsistencyTerms h = consistency_losses(cm, student, target, teacher, edm, f.at("x_start"),
                                                40, f.at("indices"), f.at("noise"), "pseudo_huber");
  const double c = 0.00054 * std::sqrt(3.0 * 16 * 16);
  const at::Tensor diff = h.distiller - h.target;
  EXPECT_TRUE(all_close(h.loss, ((diff * diff + c * c).sqrt() - c).mean({1, 2, 3}), 1e-6));
  EXPECT_NE(error_of([&] {
              consistency_losses(cm, student, target, ModelFn(), edm, f.at("x_start"), 40,
                                 f.at("indices"), f.at("noise"), "lpips");
            }).find("`loss_norm` lpips needs the LPIPS network"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_consistency_loss_norm("l3"); }).find("`loss_norm` must be one of"),
            std::string::npos);
}

TEST(Karras, EmaAndScalesFollowTheReference) {
  const auto json = load_json("cm_ema_scales.json");
  for (const auto& [name, c] : json["configs"].items()) {
    EmaScalesOptions o;
    o.target_ema_mode = c["args"]["target_ema_mode"];
    o.start_ema = c["args"]["start_ema"];
    o.scale_mode = c["args"]["scale_mode"];
    o.start_scales = c["args"]["start_scales"];
    o.end_scales = c["args"]["end_scales"];
    o.total_steps = c["args"]["total_steps"];
    o.distill_steps_per_iter = c["args"]["distill_steps_per_iter"];
    for (size_t i = 0; i < c["steps"].size(); ++i) {
      const EmaAndScales e = ema_and_scales(o, c["steps"][i].get<int64_t>());
      EXPECT_NEAR(e.target_ema, c["target_ema"][i].get<double>(), 1e-12) << name << i;
      EXPECT_EQ(e.scales, c["scales"][i].get<int64_t>()) << name << i;
    }
  }
  EmaScalesOptions bad;
  bad.target_ema_mode = "adaptive";
  EXPECT_NE(error_of([&] { ema_and_scales(bad, 0); }).find("not a combination"), std::string::npos);
}

TEST(Karras, BadSettingsAreOneLineErrors) {
  KarrasParams p;
  p.sigma_min = 80;
  EXPECT_NE(error_of([&] { KarrasDenoiser d(p); }).find("`sigma_max` must be greater than"),
            std::string::npos);
  p = KarrasParams();
  p.weight_schedule = "lpips";
  EXPECT_NE(error_of([&] { KarrasDenoiser d(p); }).find("`weight_schedule` must be one of"),
            std::string::npos);
  const NoiseSchedule ns = NoiseSchedule::karras(0.002, 80);
  EXPECT_NE(error_of([&] {
              consistency_schedule(ns, {0, 39, 22}, 40);
            }).find("`ts` must increase"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              consistency_schedule(ns, {0, 22, 40}, 40);
            }).find("`ts` must increase"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              consistency_schedule(ns, {0, 22}, 40);
            }).find("must end at steps - 1"),
            std::string::npos);
}

}  // namespace
}  // namespace idiff::test
