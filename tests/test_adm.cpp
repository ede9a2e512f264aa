// guided-diffusion's UNet (the ADM models): num_head_channels, resblock_updown,
// use_new_attention_order and explicit channel_mult, against guided-diffusion's numbers
// (tests/data/adm_*: its published checkpoints' keys and parameter counts, and a small
// random-weight model's output).
#include "test_adm_util.h"

#include "idiff/drivers/load_model.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace idiff {
namespace {

TEST(AdmUNet, TinyModelEqualsGuidedDiffusion) {
  const auto meta = test::load_json("adm_tiny.json");
  UNetModel model = test::adm_tiny_model();
  EXPECT_EQ(parameter_count(*model), meta["params"].get<int64_t>());
  const auto params = model->named_parameters();
  ASSERT_EQ(params.size(), meta["keys"].size());
  size_t i = 0;
  for (const auto& item : params) {
    EXPECT_EQ(item.key(), meta["keys"][i][0].get<std::string>());
    EXPECT_EQ(item.value().sizes().vec(), meta["keys"][i][1].get<std::vector<int64_t>>())
        << item.key();
    ++i;
  }
  const TensorMap io = test::load_fixture("adm_tiny.io.safetensors");
  torch::NoGradGuard no_grad;
  const at::Tensor out = model->forward(io.at("x"), io.at("t"), io.at("y"));
  EXPECT_CLOSE(out, io.at("out"), 1e-4);
  // The output depends on the input (the weights do not wash it out).
  const at::Tensor other = model->forward(io.at("x").flip({0}), io.at("t"), io.at("y"));
  EXPECT_GT(test::rel_error(other, out), 1e-2);
}

TEST(AdmUNet, PublishedModelsHaveGuidedDiffusionsKeysAndParameterCounts) {
  const auto published = test::load_json("adm_published.json");
  int checked = 0;
  for (const auto& [name, entry] : published.items()) {
    if (entry["kind"] == "classifier") continue;  // test_adm_classifier.cpp
    const ModelConfig m = test::model_config_from_flags(entry["flags"]);
    UNetModel model = entry["kind"] == "super_res" ? sr_create_model(m) : create_model(m);
    EXPECT_EQ(parameter_count(*model), entry["params"].get<int64_t>()) << name;
    size_t i = 0;
    for (const auto& item : model->named_parameters()) {
      ASSERT_LT(i, entry["keys"].size()) << name;
      EXPECT_EQ(item.key(), entry["keys"][i][0].get<std::string>()) << name;
      ++i;
    }
    EXPECT_EQ(i, entry["keys"].size()) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 8);  // 512x512's channel_mult 0.5 and the 128 -> 512 upsampler included
}

// --use_fp16 as guided-diffusion's: float32 weights in the file, the torso converted at
// load; --use_bf16 likewise to bfloat16. The outputs stay close to float32's.
TEST(AdmUNet, Fp16AndBf16TorsosAreConvertedAtLoad) {
  test::expect_low_precision_torsos_match(c10::Device("cpu"));
  ModelConfig m = test::model_config_from_flags(test::load_json("adm_tiny.json")["flags"]);
  m.use_fp16 = m.use_bf16 = true;
  EXPECT_NE(test::error_of([&] {
              load_model(m, false, "unused.pt", c10::Device("cpu"));
            }).find("`use_fp16` and `use_bf16`"),
            std::string::npos);
}

TEST(AdmSuperRes, TinyModelEqualsGuidedDiffusion) {
  const auto meta = test::load_json("adm_sr_tiny.json");
  UNetModel model = sr_create_model(test::model_config_from_flags(meta["flags"]));
  EXPECT_EQ(parameter_count(*model), meta["params"].get<int64_t>());
  test::set_formula_weights(*model, 24);
  model->eval();
  const TensorMap io = test::load_fixture("adm_sr_tiny.io.safetensors");
  torch::NoGradGuard no_grad;
  ModelKwargs kw;
  kw.y = io.at("y");
  kw.low_res = io.at("low_res");
  const at::Tensor out = model->forward_kwargs(io.at("x"), io.at("t"), kw);
  EXPECT_CLOSE(out, io.at("out"), 1e-4);
  kw.low_res = io.at("low_res").flip({0});
  EXPECT_GT(test::rel_error(model->forward_kwargs(io.at("x"), io.at("t"), kw), out), 1e-2);
}

TEST(AdmUNet, BadHeadWidthsAndLevelsAreClearErrors) {
  ModelConfig m;
  m.num_channels = 32;
  m.num_head_channels = 24;
  EXPECT_NE(test::error_of([&] { create_model(m); }).find("`num_head_channels` 24"),
            std::string::npos);
  m.num_head_channels = -1;
  m.channel_mult = "1,0,2";
  EXPECT_NE(test::error_of([&] { create_model(m); }).find("`channel_mult`"), std::string::npos);
  m.channel_mult = "";
  m.image_size = 96;
  EXPECT_NE(test::error_of([&] { create_model(m); }).find("`image_size` 96 has no default"),
            std::string::npos);
}

}  // namespace
}  // namespace idiff
