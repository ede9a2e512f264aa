// `idiff eval --feature_model`: a classifier's pooled activations as the feature space of
// FID, precision/recall and KID (for data Inception knows nothing of).
#include "test_adm_util.h"
#include "test_train_util.h"

#include "idiff/eval/fid.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>
#include <filesystem>

#include <regex>

namespace idiff {
namespace {

using test::TempDir;

TEST(ClassifierFeatures, PooledFeaturesFeedTheHeadAndDependOnTheInput) {
  c10::InferenceMode guard;
  for (const std::string pool : {"adaptive", "attention", "spatial", "spatial_v2"}) {
    ClassifierConfig c;
    c.classifier_width = 32;
    c.classifier_depth = 1;
    c.classifier_attention_resolutions = "8";
    c.classifier_pool = pool;
    at::manual_seed(3);
    EncoderUNetModel net = create_classifier(c, 32);
    test::randomize_parameters(net->parameters());
    const at::Tensor x = at::randn({2, 3, 32, 32}), t = at::zeros({2}, at::kLong);
    const at::Tensor f = net->pooled_features(x, t);
    EXPECT_EQ(f.dim(), 2) << pool;
    EXPECT_TRUE(at::allclose(net->head(f), net->forward(x, t))) << pool;
    const at::Tensor g = net->pooled_features(at::randn({2, 3, 32, 32}), t);
    EXPECT_GT((f - g).abs().max().item<float>(), 1e-4) << pool;
  }
}

// [n, 64, 64, 3] uint8 images: smooth ramps whose slope depends on `shift`.
at::Tensor ramp_images(int64_t n, double shift) {
  const at::Tensor x = at::linspace(0, 1, 64).view({1, 1, 64, 1});
  const at::Tensor k = (at::arange(n).to(at::kFloat) / n + shift).view({n, 1, 1, 1});
  return ((x * k * 200 + at::linspace(0, 40, 3).view({1, 1, 1, 3})).clamp(0, 255))
      .expand({n, 64, 64, 3})
      .to(at::kByte)
      .contiguous();
}

// The classifier's features of uint8 images, computed here (the expectation).
at::Tensor features_of(EncoderUNetModel& net, const at::Tensor& nhwc) {
  c10::InferenceMode guard;
  const at::Tensor x = nhwc.permute({0, 3, 1, 2}).to(at::kFloat) / 255 * 2 - 1;
  return net->pooled_features(x, at::zeros({x.size(0)}, at::kLong)).to(at::kDouble);
}

double fid_of(const at::Tensor& a, const at::Tensor& b) {
  const auto stats = [](const at::Tensor& f) {
    const at::Tensor mu = f.mean(0), c = f - mu;
    return std::make_pair(mu, c.t().mm(c) / (f.size(0) - 1));
  };
  const auto [mu1, s1] = stats(a);
  const auto [mu2, s2] = stats(b);
  return frechet_distance(mu1, s1, mu2, s2);
}

TEST(EvalCli, FeatureModelScoresInTheClassifiersSpace) {
  TempDir dir;
  // guided-diffusion's tiny classifier with N(0, 0.05^2) weights: its formula weights wash
  // these images out (every feature alike), and then any two sets would "match".
  EncoderUNetModel net = test::adm_tiny_classifier();
  at::manual_seed(5);
  test::randomize_parameters(net->parameters());
  save_tensor_file(dir.file("cls.pt"), state_dict(*net));
  const at::Tensor a = ramp_images(12, 0.2), b = ramp_images(12, 0.9);
  TensorMap ma, mb;
  ma.insert("arr_0", a);
  mb.insert("arr_0", b);
  write_npz(dir.file("a.npz"), ma);
  write_npz(dir.file("b.npz"), mb);
  const std::vector<std::string> cls = {"--feature_model",
                                        dir.file("cls.pt"),
                                        "--image_size",
                                        "64",
                                        "--classifier_width",
                                        "64",
                                        "--classifier_depth",
                                        "1",
                                        "--classifier_attention_resolutions",
                                        "16,8",
                                        "--kid_subset_size",
                                        "6",
                                        "--device",
                                        "cpu"};
  auto r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"eval", "--ref", dir.file("a.npz"), "--samples", dir.file("b.npz")},
      cls));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("FID: ([0-9.]+)"))) << r.out;
  const double expected = fid_of(features_of(net, a), features_of(net, b));
  // The two sets differ in this space (the same set: 0).
  EXPECT_GT(expected, 1e-4);
  EXPECT_LT(fid_of(features_of(net, a), features_of(net, a)), 1e-9);
  EXPECT_NEAR(std::stod(m[1]), expected, 1e-3 * expected + 1e-6) << r.out;  // 6 decimals printed
  EXPECT_NE(r.out.find("in the feature space of the classifier"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Inception Score:"), std::string::npos) << r.out;
  // Bad feature models and images, one line each.
  save_tensor_file(dir.file("unet.pt"), state_dict(*test::adm_tiny_model()));
  std::vector<std::string> bad = cls;
  bad[1] = dir.file("unet.pt");
  r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"eval", "--ref", dir.file("a.npz"), "--samples", dir.file("b.npz")},
      bad));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir.file("unet.pt")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("a classifier for --image_size 64"), std::string::npos) << r.err;
  TensorMap small;
  small.insert("arr_0", at::zeros({4, 32, 32, 3}, at::kByte));
  write_npz(dir.file("small.npz"), small);
  r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"eval", "--ref", dir.file("small.npz"), "--samples",
                                              dir.file("b.npz")},
                     cls));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is a classifier of 64x64 images (--image_size), but these are 32x32"),
            std::string::npos)
      << r.err;
  // An output that cannot be written fails before any image is embedded.
  std::filesystem::create_directories(dir.file("stats.npz"));
  r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"eval", "--ref", dir.file("a.npz"), "--save_stats",
                                              dir.file("stats.npz")},
                     cls));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--save_stats " + dir.file("stats.npz") + " is a folder"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("embedding"), std::string::npos) << r.err;
  // One sample: the set is named (no statistics of one image).
  TensorMap one;
  one.insert("arr_0", a.narrow(0, 0, 1).contiguous());
  write_npz(dir.file("one.npz"), one);
  r = test::run_idiff(test::cat_args(std::vector<std::string>{"eval", "--ref", dir.file("a.npz"),
                                                              "--samples", dir.file("one.npz")},
                                     cls));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--samples: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gave 1 image; its statistics (a mean and covariance) need at least 2"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace idiff
