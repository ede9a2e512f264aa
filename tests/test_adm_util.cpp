#include "test_adm_util.h"

#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/drivers/load_model.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

namespace idiff::test {

UNetModel adm_tiny_model() {
  UNetModel model = create_model(model_config_from_flags(load_json("adm_tiny.json")["flags"]));
  set_formula_weights(*model, 21);
  model->eval();
  return model;
}

EncoderUNetModel adm_tiny_classifier() {
  const auto flags = load_json("adm_cls_tiny.json")["flags"];
  EncoderUNetModel classifier =
      create_classifier(classifier_config_from_flags(flags), flags["image_size"].get<int64_t>());
  set_formula_weights(*classifier, 22);
  classifier->eval();
  return classifier;
}

at::Tensor adm_guided_trajectory(const ModelFn& model, const CondFn& cond_fn, const TensorMap& io,
                                 c10::Device device) {
  DiffusionConfig d = diffusion_config_from_flags(load_json("adm_tiny.json")["flags"]);
  d.timestep_respacing = "10";
  const auto solver = make_reference_solver(create_gaussian_diffusion(d), model, /*ddim=*/false,
                                            0.0, /*clip_denoised=*/true, {}, cond_fn);
  const at::Tensor rows = solver->coefficients();
  EXPECT_EQ(rows.size(0), io.at("step_noise").size(0));
  at::Tensor x = io.at("x_T").to(device);
  for (int64_t i = 0; i < rows.size(0); ++i) {
    x = solver->step(x, rows[i].to(device, x.scalar_type()), io.at("step_noise")[i].to(device), 0)
            .sample;
  }
  return x.cpu();
}

void expect_low_precision_torsos_match(c10::Device device) {
  TempDir dir;
  ModelConfig m = model_config_from_flags(load_json("adm_tiny.json")["flags"]);
  save_tensor_file(dir.file("model.pt"), state_dict(*adm_tiny_model()));
  const TensorMap io = load_fixture("adm_tiny.io.safetensors");
  for (const auto& [dtype, tolerance] :
       {std::pair{at::kFloat, 1e-4}, std::pair{at::kHalf, 5e-3}, std::pair{at::kBFloat16, 3e-2}}) {
    m.use_fp16 = dtype == at::kHalf;
    m.use_bf16 = dtype == at::kBFloat16;
    UNetModel model = load_model(m, false, dir.file("model.pt"), device);
    EXPECT_EQ(model->inner_dtype(), dtype);
    torch::NoGradGuard no_grad;
    const at::Tensor out =
        model->forward(io.at("x").to(device), io.at("t").to(device), io.at("y").to(device));
    EXPECT_EQ(out.scalar_type(), at::kFloat);
    EXPECT_CLOSE(out.cpu(), io.at("out"), tolerance) << c10::toString(dtype);
  }
}

}  // namespace idiff::test
