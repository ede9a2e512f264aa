// guided-diffusion's noisy-image classifier (EncoderUNetModel) against guided-diffusion's
// numbers: a small random-weight classifier's logits (tests/data/adm_cls_tiny.*) and the
// released classifiers' keys and parameter counts; every pooling head.
#include "test_adm_util.h"

#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace idiff {
namespace {

void expect_keys(const torch::nn::Module& model, const nlohmann::json& entry,
                 const std::string& name) {
  EXPECT_EQ(parameter_count(model), entry["params"].get<int64_t>()) << name;
  const auto params = model.named_parameters();
  ASSERT_EQ(params.size(), entry["keys"].size()) << name;
  size_t i = 0;
  for (const auto& item : params) {
    EXPECT_EQ(item.key(), entry["keys"][i][0].get<std::string>()) << name;
    EXPECT_EQ(item.value().sizes().vec(), entry["keys"][i][1].get<std::vector<int64_t>>())
        << name << " " << item.key();
    ++i;
  }
}

TEST(AdmClassifier, TinyClassifierEqualsGuidedDiffusion) {
  const auto meta = test::load_json("adm_cls_tiny.json");
  EncoderUNetModel model = test::adm_tiny_classifier();
  expect_keys(*model, meta, "adm_cls_tiny");
  const TensorMap io = test::load_fixture("adm_cls_tiny.io.safetensors");
  torch::NoGradGuard no_grad;
  const at::Tensor out = model->forward(io.at("x"), io.at("t"));
  EXPECT_CLOSE(out, io.at("out"), 1e-4);
  // The formula's weights make the logits mostly a constant (their +0.01 offsets); what
  // depends on the image and the timestep, the difference between the two samples' logits,
  // matches too.
  const at::Tensor diff = out[0] - out[1], ref_diff = io.at("out")[0] - io.at("out")[1];
  EXPECT_CLOSE(diff, ref_diff, 5e-3);  // 5e-4 measured: the difference is 6e-4 of the logits
  // classifier_use_fp16: the torso in float16, the logits float32 and close.
  model->convert_to_fp16();
  const at::Tensor half = model->forward(io.at("x"), io.at("t"));
  EXPECT_EQ(half.scalar_type(), at::kFloat);
  EXPECT_CLOSE(half, io.at("out"), 1e-3);
}

TEST(AdmClassifier, PublishedClassifiersHaveGuidedDiffusionsKeysAndParameterCounts) {
  const auto published = test::load_json("adm_published.json");
  int checked = 0;
  for (const auto& [name, entry] : published.items()) {
    if (entry["kind"] != "classifier") continue;
    const auto& flags = entry["flags"];
    EncoderUNetModel model = create_classifier(test::classifier_config_from_flags(flags),
                                               flags["image_size"].get<int64_t>());
    expect_keys(*model, entry, name);
    ++checked;
  }
  EXPECT_EQ(checked, 4);  // 64, 128, 256 and 512 (channel_mult 0.5)
}

// Every head builds guided-diffusion's modules under its names and gives logits that
// depend on the input.
TEST(AdmClassifier, EveryPoolGivesLogitsThatDependOnTheInput) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> pools = {
      {"adaptive", {"out.0.weight", "out.3.weight"}},
      {"attention", {"out.0.weight", "out.2.positional_embedding", "out.2.c_proj.weight"}},
      {"spatial", {"out.0.weight", "out.2.weight"}},
      {"spatial_v2", {"out.0.weight", "out.1.weight", "out.3.weight"}}};
  at::manual_seed(3);  // the inputs and the initialisation
  const at::Tensor x = at::randn({2, 3, 64, 64});
  const at::Tensor t = at::tensor({10.0f, 900.0f});
  for (const auto& [pool, keys] : pools) {
    ClassifierConfig c;
    c.classifier_width = 32;
    c.classifier_depth = 1;
    c.classifier_attention_resolutions = "8";
    c.classifier_pool = pool;
    EncoderUNetModel model = create_classifier(c, 64);
    const TensorMap sd = state_dict(*model);
    for (const auto& key : keys) EXPECT_TRUE(sd.contains(key)) << pool << " " << key;
    // PyTorch's initialisation, with random values where the reference zeroes a layer
    // (zero_module), so that the head sees the image (N(0, 0.05^2) everywhere, as
    // test::randomize_parameters gives, washes the input out of this deep a network).
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) {
        if (p.abs().max().item<double>() == 0) p.normal_(0, 0.05);
      }
    }
    model->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor out = model->forward(x, t);
    EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{2, kNumClasses})) << pool;
    EXPECT_GT(test::rel_error(model->forward(x.flip({0}), t), out), 1e-2) << pool;
  }
}

TEST(AdmClassifier, FlagsFromShapesAlone) {
  const auto published = test::load_json("adm_published.json");
  nlohmann::json entries = nlohmann::json::object();
  for (const auto& [name, entry] : published.items()) {
    if (entry["kind"] == "classifier") entries[name] = entry;
  }
  entries["adm_cls_tiny"] = test::load_json("adm_cls_tiny.json");
  for (const auto& [name, entry] : entries.items()) {
    TensorMap sd;  // meta tensors: shapes without memory
    for (const auto& key : entry["keys"]) {
      sd.insert(key[0].get<std::string>(),
                at::empty(key[1].get<std::vector<int64_t>>(), at::device(at::kMeta)));
    }
    const InferredClassifier got = infer_classifier_config(sd);
    const ClassifierConfig want = test::classifier_config_from_flags(entry["flags"]);
    ASSERT_TRUE(got.is_classifier) << name;
    EXPECT_EQ(got.image_size, entry["flags"]["image_size"].get<int64_t>()) << name;
    EXPECT_EQ(got.num_classes, kNumClasses) << name;
    EXPECT_EQ(got.config.classifier_width, want.classifier_width) << name;
    EXPECT_EQ(got.config.classifier_depth, want.classifier_depth) << name;
    EXPECT_EQ(got.config.classifier_attention_resolutions, want.classifier_attention_resolutions)
        << name;
    EXPECT_EQ(got.config.classifier_use_scale_shift_norm, want.classifier_use_scale_shift_norm)
        << name;
    EXPECT_EQ(got.config.classifier_resblock_updown, want.classifier_resblock_updown) << name;
    EXPECT_EQ(got.config.classifier_pool, want.classifier_pool) << name;
    EXPECT_FALSE(infer_model_config(sd).is_unet) << name;
  }
}

TEST(AdmClassifier, BadSettingsAreClearErrors) {
  ClassifierConfig c;
  c.classifier_pool = "max";
  EXPECT_NE(test::error_of([&] { create_classifier(c, 64); }).find("`classifier_pool`"),
            std::string::npos);
  c = ClassifierConfig();
  c.classifier_attention_resolutions = "16,x";
  EXPECT_NE(
      test::error_of([&] { create_classifier(c, 64); }).find("`classifier_attention_resolutions`"),
      std::string::npos);
  c = ClassifierConfig();
  EXPECT_NE(test::error_of([&] { create_classifier(c, 48); }).find("48"), std::string::npos);
  c.classifier_width = 16;  // the classifier's own flag is named, not the UNet's num_channels
  EXPECT_NE(test::error_of([&] {
              create_classifier(c, 64);
            }).find("`classifier_width` must be a positive multiple of 32"),
            std::string::npos);
  EncoderUNetModel model = create_classifier(ClassifierConfig(), 64);
  EXPECT_NE(test::error_of([&] {
              model->forward(at::zeros({1, 3, 32, 32}), at::zeros({1}));
            }).find("built for 64x64"),
            std::string::npos);
}

}  // namespace
}  // namespace idiff
