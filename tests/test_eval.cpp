// The evaluation code (src/idiff/eval): FID statistics and Fréchet distance against closed
// forms and scipy (through pytorch-fid), IS, precision/recall and KID against closed forms
// and plain loops, the FID Inception against pytorch-fid on seeded random weights
// (tests/py/fid_parity.py), the streamed npz reader, and bad inputs.
#include "test_io_util.h"
#include "test_util.h"

#include "idiff/eval/evaluator.h"
#include "idiff/eval/fid.h"
#include "idiff/eval/image_source.h"
#include "idiff/eval/inception.h"
#include "idiff/eval/metrics.h"
#include "idiff/io/npz.h"
#include "idiff/io/npz_stream.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <memory>

namespace idiff {
namespace {

using test::TempDir;

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, at::kDouble);
}

// A random orthogonal matrix (QR of a Gaussian one).
at::Tensor orthogonal(int64_t d, uint64_t seed) {
  return std::get<0>(at::linalg_qr(randn({d, d}, seed)));
}

TEST(EvalFid, StatisticsEqualTwoPassMeanAndCovariance) {
  const at::Tensor x = randn({300, 7}, 1) * 3 + 100;  // a large mean tests the shifted sums
  StatsAccumulator acc;
  for (int64_t i = 0; i < 300; i += 64) acc.add(x.slice(0, i, std::min<int64_t>(300, i + 64)));
  const FeatureStats s = acc.finish();
  EXPECT_EQ(s.count, 300);
  EXPECT_CLOSE(s.mu, x.mean(0), 1e-12);
  EXPECT_CLOSE(s.sigma, at::cov(x.t()), 1e-10);
}

TEST(EvalFid, DistanceOfASetWithItselfIsZero) {
  for (const auto& shape : {std::vector<int64_t>{200, 16}, std::vector<int64_t>{6, 64}}) {
    const FeatureStats s = feature_stats(randn(shape, 2).abs());  // [6, 64]: singular sigma
    const double fid = frechet_distance(s.mu, s.sigma, s.mu, s.sigma);
    EXPECT_NEAR(fid, 0.0, 1e-9 * s.sigma.trace().item<double>()) << shape[0] << "x" << shape[1];
  }
}

TEST(EvalFid, GaussiansMatchTheClosedForm) {
  const int64_t d = 10;
  const at::Tensor mu1 = randn({d}, 3), mu2 = randn({d}, 4);
  const at::Tensor q = orthogonal(d, 5);
  const at::Tensor a = randn({d}, 6).abs() + 0.1, b = randn({d}, 7).abs() + 0.1;
  // Commuting covariances Q diag(a) Q^T, Q diag(b) Q^T:
  //   FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
  const at::Tensor s1 = at::matmul(q * a, q.t()), s2 = at::matmul(q * b, q.t());
  const double want =
      (mu1 - mu2).pow(2).sum().item<double>() + (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, s1, mu2, s2), want, 1e-10 * want);
  // S1 = c I against any S2: tr((c S2)^(1/2)) = sqrt(c) sum_i sqrt(eig_i(S2)).
  const at::Tensor r = randn({d, d}, 8);
  const at::Tensor s3 = at::matmul(r, r.t());
  const double c = 2.5;
  const double want3 = (mu1 - mu2).pow(2).sum().item<double>() + c * d + s3.trace().item<double>() -
                       2 * std::sqrt(c) * at::linalg_eigvalsh(s3).sqrt().sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, at::eye(d, at::kDouble) * c, mu2, s3), want3, 1e-9 * want3);
  // Rank-deficient S1 (a zero eigenvalue): the zero contributes nothing, no offset needed.
  const at::Tensor a0 = a.clone();
  a0[0] = 0;
  const at::Tensor s0 = at::matmul(q * a0, q.t());
  const double want0 = (a0.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(frechet_distance(mu1, s0, mu1, s2), want0, 1e-8 * want0);
}

TEST(EvalFid, MismatchedShapesAreAClearError) {
  const FeatureStats s = feature_stats(randn({20, 4}, 9));
  const FeatureStats t = feature_stats(randn({20, 5}, 9));
  EXPECT_NE(
      test::error_of([&] { frechet_distance(s.mu, s.sigma, t.mu, t.sigma); }).find("same network"),
      std::string::npos);
  EXPECT_NE(test::error_of([&] {
              feature_stats(randn({1, 4}, 9));
            }).find("at least 2 images"),
            std::string::npos);
}

// Statistics files whose mu or sigma hold NaN, or whose sigma is not symmetric, are refused
// with the file named (FID: nan, or a number from a non-covariance, would be exit 0).
TEST(EvalFid, StatisticsThatAreNoCovarianceAreRefused) {
  test::TempDir dir;
  const FeatureStats good = feature_stats(randn({20, 4}, 9));
  const auto saved = [&](const std::string& name, const at::Tensor& mu, const at::Tensor& sigma) {
    TensorMap m;
    m.insert("mu", mu);
    m.insert("sigma", sigma);
    write_npz(dir.file(name), m);
    return test::error_of([&] { load_stats(dir.file(name)); });
  };
  EXPECT_EQ(saved("good.npz", good.mu, good.sigma), "<no error>");
  at::Tensor nan_sigma = good.sigma.clone();
  nan_sigma[1][1] = NAN;
  EXPECT_NE(saved("nan.npz", good.mu, nan_sigma).find("nan.npz: mu and sigma must be finite"),
            std::string::npos);
  at::Tensor skew = good.sigma.clone();
  skew[0][1] = skew[0][1].item<double>() + 1.0;
  EXPECT_NE(saved("skew.npz", good.mu, skew).find("skew.npz: sigma is not a covariance"),
            std::string::npos);
}

TEST(EvalFid, FrechetDistanceMatchesScipy) {
  // pytorch-fid's calculate_frechet_distance (scipy sqrtm) of two 12-d Gaussian samples,
  // committed by tests/py/fid_parity.py --write-fixture.
  const TensorMap committed = read_npz(test::data_path("fid_parity_pytorch_fid.npz"));
  const FeatureStats g1 = feature_stats(committed.at("g1"));
  const FeatureStats g2 = feature_stats(committed.at("g2"));
  const double want = committed.at("fid_g").item<double>();
  EXPECT_NEAR(frechet_distance(g1.mu, g1.sigma, g2.mu, g2.sigma), want, 1e-8 * want);
}

TEST(EvalMetrics, InceptionScoreClosedForms) {
  // Uniform predictions: p(y|x) = p(y), KL = 0, IS = 1.
  EXPECT_NEAR(inception_score(at::zeros({40, 1008}), 10).mean, 1.0, 1e-12);
  // Confident predictions spread evenly over C classes in every split: IS = C.
  const int64_t c = 4;
  const at::Tensor labels = at::arange(40, at::kLong) % c;
  const at::Tensor logits = at::one_hot(labels, 1008).to(at::kFloat) * 60;
  const MeanStd is = inception_score(logits, 10);
  EXPECT_NEAR(is.mean, double(c), 1e-6);
  EXPECT_NEAR(is.std, 0.0, 1e-9);
  EXPECT_NE(test::error_of([] {
              inception_score(at::zeros({5, 10}), 10);
            }).find("splits"),
            std::string::npos);
}

TEST(EvalMetrics, PrecisionRecallKnownAnswers) {
  const at::Tensor x = randn({50, 8}, 10).to(at::kFloat);
  const PrecisionRecall same = precision_recall(x, x, 3, /*block=*/16);
  EXPECT_EQ(same.precision, 1.0);
  EXPECT_EQ(same.recall, 1.0);
  const PrecisionRecall apart = precision_recall(x, x + 100, 3, 16);
  EXPECT_EQ(apart.precision, 0.0);
  EXPECT_EQ(apart.recall, 0.0);
  // 1-d, k = 1. Reference {0, 1, 2, 3}: radii 1 (squared). Samples {0.5, 10, 20, 2.5}:
  // 0.5 and 2.5 lie within a reference radius, 10 and 20 do not: precision 1/2. The
  // sample radii (to the nearest other sample, squared) are 4, 56.25, 100, 4: every
  // reference point is within 4 of 0.5 or 2.5: recall 1.
  const at::Tensor ref = at::tensor({0.0f, 1.0f, 2.0f, 3.0f}).unsqueeze(1);
  const at::Tensor sam = at::tensor({0.5f, 10.0f, 20.0f, 2.5f}).unsqueeze(1);
  const PrecisionRecall pr = precision_recall(ref, sam, 1, /*block=*/3);
  EXPECT_EQ(pr.precision, 0.5);
  EXPECT_EQ(pr.recall, 1.0);
  EXPECT_CLOSE(manifold_radii(sam, 1, 3), at::tensor({4.0f, 56.25f, 100.0f, 4.0f}), 1e-7);
}

// The unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, in plain loops.
double mmd2_loops(const at::Tensor& x, const at::Tensor& y) {
  const auto a = x.accessor<double, 2>(), b = y.accessor<double, 2>();
  const int64_t m = x.size(0), d = x.size(1);
  auto k = [d](auto u, auto v) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += u[i] * v[i];
    return std::pow(dot / d + 1, 3);
  };
  double xx = 0, yy = 0, xy = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < m; ++j) {
      if (i != j) xx += k(a[i], a[j]), yy += k(b[i], b[j]);
      xy += k(a[i], b[j]);
    }
  }
  return (xx + yy) / (m * (m - 1.0)) - 2 * xy / double(m * m);
}

TEST(EvalMetrics, KidMatchesPlainLoops) {
  const at::Tensor x = randn({30, 6}, 11), y = randn({30, 6}, 12) + 0.3;
  EXPECT_NEAR(polynomial_mmd2(x, y), mmd2_loops(x, y), 1e-12);
  // One subset holding every row: the full-set MMD^2 (the order of rows does not matter).
  const MeanStd kid = kernel_inception_distance(x, y, 1, 1000, 0);
  EXPECT_NEAR(kid.mean, mmd2_loops(x, y), 1e-12);
  // Sets from one distribution: KID near 0; shifted: clearly positive.
  const MeanStd same = kernel_inception_distance(randn({400, 6}, 13), randn({400, 6}, 14), 20, 100);
  const MeanStd shifted =
      kernel_inception_distance(randn({400, 6}, 13), randn({400, 6}, 14) + 1, 20, 100);
  EXPECT_LT(std::abs(same.mean), 3 * same.std + 1e-3);
  EXPECT_GT(shifted.mean, 3 * shifted.std);
}

TEST(EvalNpzStream, RowsMatchTheWholeArray) {
  TempDir dir;
  const at::Tensor images = (at::arange(7 * 5 * 4 * 3) % 251).to(at::kByte).reshape({7, 5, 4, 3});
  TensorMap m;
  m.insert("arr_0", images);
  m.insert("arr_1", at::arange(7, at::kLong));
  write_npz(dir.file("s.npz"), m);
  NpzArrayStream stream(dir.file("s.npz"), "arr_0");
  EXPECT_EQ(stream.rows(), 7);
  std::vector<at::Tensor> parts;
  while (stream.rows_left() > 0) parts.push_back(stream.read_rows(3));
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_TRUE(test::same_bits(at::cat(parts), images));
  EXPECT_EQ(stream.read_rows(3).size(0), 0);
  EXPECT_TRUE(test::throws_file_error([&] { NpzArrayStream(dir.file("s.npz"), "mu"); },
                                      {"s.npz", "no array 'mu'"}));
  // A float arr_0 is not a sample file.
  TensorMap f;
  f.insert("arr_0", at::zeros({2, 4, 4, 3}));
  write_npz(dir.file("f.npz"), f);
  EXPECT_TRUE(test::throws_file_error([&] { ImageSource::open(dir.file("f.npz"), "--samples"); },
                                      {"--samples", "f.npz", "uint8 images"}));
  // Two channels are neither RGB nor grey: the message names both it takes.
  TensorMap two;
  two.insert("arr_0", at::zeros({2, 4, 4, 2}, at::kByte));
  write_npz(dir.file("two.npz"), two);
  EXPECT_TRUE(
      test::throws_file_error([&] { ImageSource::open(dir.file("two.npz"), "--samples"); },
                              {"two.npz", "[N, H, W, 3] or grey [N, H, W, 1]", "[2, 4, 4, 2]"}));
  // Grey samples ([N, H, W, 1], a grey model's) are taken.
  TensorMap grey;
  grey.insert("arr_0", at::zeros({2, 4, 4, 1}, at::kByte));
  write_npz(dir.file("grey.npz"), grey);
  EXPECT_EQ(ImageSource::open(dir.file("grey.npz"), "--samples")->size(), 2);
  // A truncated file.
  const std::string bytes = test::read_bytes(dir.file("s.npz"));
  test::write_bytes(dir.file("t.npz"), bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(test::throws_file_error([&] { ImageSource::open(dir.file("t.npz"), "--ref"); },
                                      {"--ref", "t.npz"}));
  EXPECT_TRUE(test::throws_file_error([&] { ImageSource::open(dir.file("none.npz"), "--ref"); },
                                      {"--ref", "none.npz", "no such file"}));
}

TEST(EvalInception, MissingOrWrongWeightsSayWhereToGetThem) {
  TempDir dir;
  const c10::Device cpu(c10::kCPU);
  EXPECT_TRUE(test::throws_file_error([&] { load_fid_inception(dir.file("none.pth"), cpu); },
                                      {"none.pth", "no such file", "pt_inception-2015-12-05"}));
  TensorMap other;
  other.insert("fc.weight", at::zeros({10, 2048}));
  save_tensor_file(dir.file("other.pt"), other);
  EXPECT_TRUE(test::throws_file_error([&] { load_fid_inception(dir.file("other.pt"), cpu); },
                                      {"other.pt", "Conv2d_1a_3x3.conv.weight", "pt_inception"}));
  test::write_bytes(dir.file("junk.pth"), "not a checkpoint");
  EXPECT_TRUE(test::throws_file_error([&] { load_fid_inception(dir.file("junk.pth"), cpu); },
                                      {"junk.pth", "pt_inception"}));
}

// pytorch-fid on seeded random weights (tests/py/fid_parity.py), run once for the suite.
class EvalParity : public ::testing::Test {
 protected:
  // A failure here is recorded and fails every test in SetUp (an ASSERT in
  // SetUpTestSuite would only mark them skipped).
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    const auto r = test::run_python_script(
        "fid_parity.py", {dir_->path(), test::data_path("fid_parity_pytorch_fid.npz")});
    if (r.exit_code != 0) {
      setup_error_ = "tests/py/fid_parity.py failed:\n" + r.out + r.err;
      return;
    }
    expected_ = std::make_unique<TensorMap>(read_npz(dir_->file("expected.npz")));
    net_ = std::make_unique<FIDInceptionV3>(
        load_fid_inception(dir_->file("inception.pth"), c10::Device(c10::kCPU)));
  }
  void SetUp() override { ASSERT_EQ(setup_error_, "") << setup_error_; }
  static void TearDownTestSuite() {
    a_.reset();
    b_.reset();
    net_.reset();
    expected_.reset();
    dir_.reset();
  }
  static FeatureStats embed(const std::string& name, int64_t batch) {
    auto source = ImageSource::open(dir_->file(name), "--samples");
    return embed_images(*source, *net_, c10::Device(c10::kCPU), batch, false, name);
  }
  static const at::Tensor& expected(const std::string& key) { return expected_->at(key); }
  // a.npz and b.npz embedded by idiff, once per process (ctest runs each test alone).
  static const FeatureStats& a() {
    if (!a_) a_ = std::make_unique<FeatureStats>(embed("a.npz", 2));  // batches of 2, 2, 1
    return *a_;
  }
  static const FeatureStats& b() {
    if (!b_) b_ = std::make_unique<FeatureStats>(embed("b.npz", 5));
    return *b_;
  }

  static std::unique_ptr<TempDir> dir_;
  static std::unique_ptr<TensorMap> expected_;
  static std::unique_ptr<FIDInceptionV3> net_;
  static std::unique_ptr<FeatureStats> a_, b_;
  static std::string setup_error_;
};
std::unique_ptr<TempDir> EvalParity::dir_;
std::unique_ptr<TensorMap> EvalParity::expected_;
std::unique_ptr<FIDInceptionV3> EvalParity::net_;
std::unique_ptr<FeatureStats> EvalParity::a_, EvalParity::b_;
std::string EvalParity::setup_error_;

TEST_F(EvalParity, FeaturesLogitsAndFidMatchPytorchFid) {
  const FeatureStats &a = EvalParity::a(), &b = EvalParity::b();
  // Outputs depend on the inputs: different images, clearly different features.
  EXPECT_GT(test::rel_error(a.features[0], a.features[1]), 0.05);
  EXPECT_CLOSE(a.features, expected("feat_a").to(at::kFloat), 1e-4);
  EXPECT_CLOSE(b.features, expected("feat_b").to(at::kFloat), 1e-4);
  EXPECT_CLOSE(a.logits, expected("logits_a").to(at::kFloat), 1e-4);
  EXPECT_CLOSE(b.logits, expected("logits_b").to(at::kFloat), 1e-4);
  // pytorch-fid's FID of these sets (scipy sqrtm; committed, see fid_parity.py).
  const TensorMap committed = read_npz(test::data_path("fid_parity_pytorch_fid.npz"));
  const double want = committed.at("fid_ab").item<double>();
  const double fid = frechet_distance(a.mu, a.sigma, b.mu, b.sigma);
  EXPECT_NEAR(fid, want, 1e-3 * want);
  // The square-root term alone (what scipy's sqrtm computes there), on pytorch-fid's own
  // features: tr((S1 S2)^(1/2)) = (|mu1 - mu2|^2 + tr S1 + tr S2 - FID) / 2.
  const FeatureStats pa = feature_stats(committed.at("feat_a"));
  const FeatureStats pb = feature_stats(committed.at("feat_b"));
  const double tr_sqrt_want =
      ((pa.mu - pb.mu).pow(2).sum() + pa.sigma.trace() + pb.sigma.trace()).item<double>() / 2 -
      want / 2;
  EXPECT_NEAR(trace_sqrt_product(pa.sigma, pb.sigma), tr_sqrt_want, 1e-4 * tr_sqrt_want);
  // The same images as PNG files in a folder (each resized on its own) and through
  // np.savez_compressed.
  const FeatureStats png = embed("a_png", 3);
  EXPECT_CLOSE(png.features, expected("feat_a").to(at::kFloat), 1e-4);
  NpzArrayStream plain(dir_->file("a.npz"), "arr_0"),
      packed(dir_->file("a_compressed.npz"), "arr_0");
  EXPECT_TRUE(test::same_bits(plain.read_rows(100), packed.read_rows(100)));
  // The weights in torch.save's pre-1.6 format load the same.
  torch::NoGradGuard no_grad;
  const FIDInceptionV3 legacy =
      load_fid_inception(dir_->file("inception_legacy.pth"), c10::Device(c10::kCPU));
  EXPECT_TRUE(test::same_maps(state_dict(*legacy), state_dict(**net_)));
}

TEST_F(EvalParity, CommandLineScoresAndCachesStatistics) {
  // The reference from statistics saved by the library, the samples embedded by the CLI.
  save_stats(dir_->file("a_stats.npz"), a());
  auto r =
      test::run_idiff({"eval", "--ref", dir_->file("a_stats.npz"), "--samples", dir_->file("b.npz"),
                       "--inception_path", dir_->file("inception.pth"), "--device", "cpu",
                       "--is_splits", "5", "--save_sample_stats", dir_->file("b_stats.npz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double want =
      read_npz(test::data_path("fid_parity_pytorch_fid.npz")).at("fid_ab").item<double>();
  const auto fid_at = r.out.find("FID: ");
  ASSERT_NE(fid_at, std::string::npos) << r.out;
  EXPECT_NEAR(std::stod(r.out.substr(fid_at + 5)), want, 1e-3 * want);
  const std::string fid_line = r.out.substr(fid_at, r.out.find('\n', fid_at) - fid_at);
  for (const char* name : {"Inception Score: ", "Precision: ", "Recall: ", "KID: "})
    EXPECT_NE(r.out.find(name), std::string::npos) << name << " missing from\n" << r.out;
  EXPECT_CLOSE(read_npz(dir_->file("b_stats.npz")).at("features"),
               expected("feat_b").to(at::kFloat), 1e-4);
  // The cached statistics give the same report without the network.
  auto cached = test::run_idiff({"eval", "--ref", dir_->file("a_stats.npz"), "--samples",
                                 dir_->file("b_stats.npz"), "--is_splits", "5"});
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_EQ(cached.out, r.out);
  // pytorch-fid's own statistics layout (mu and sigma only): FID, and a note for the rest.
  TensorMap pf;
  pf.insert("mu", a().mu);
  pf.insert("sigma", a().sigma);
  write_npz(dir_->file("pf.npz"), pf);
  auto only = test::run_idiff({"eval", "--ref", dir_->file("pf.npz"), "--samples",
                               dir_->file("b_stats.npz"), "--is_splits", "5"});
  ASSERT_EQ(only.exit_code, 0) << only.err;
  EXPECT_NE(only.out.find(fid_line), std::string::npos) << only.out;
  EXPECT_NE(only.out.find("note: precision/recall and KID"), std::string::npos) << only.out;
}

TEST(EvalCli, BadInputIsOneLineAndNonZero) {
  TempDir dir;
  auto r = test::run_idiff({"eval", "--ref", dir.file("nothing.npz"), "--samples",
                            dir.file("nothing.npz"), "--inception_path", dir.file("x.pth")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--ref"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  TensorMap m;
  m.insert("arr_0", at::zeros({3, 8, 8, 3}, at::kByte));
  write_npz(dir.file("s.npz"), m);
  r = test::run_idiff({"eval", "--ref", dir.file("s.npz"), "--samples", dir.file("s.npz"),
                       "--inception_path", dir.file("x.pth"), "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("pt_inception-2015-12-05"), std::string::npos) << r.err;
  // A device is not "no such file": it is refused as what it is, never read.
  r = test::run_idiff({"eval", "--ref", dir.file("s.npz"), "--samples", dir.file("s.npz"),
                       "--inception_path", "/dev/zero", "--device", "cpu"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/dev/zero is not a regular file"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("no such file"), std::string::npos) << r.err;
  r = test::run_idiff({"eval", "--ref", dir.file("s.npz")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--samples is required"), std::string::npos) << r.err;
  // Statistics written over an input: refused before anything is read or written.
  const auto before = std::filesystem::file_size(dir.file("s.npz"));
  r = test::run_idiff({"eval", "--ref", dir.file("s.npz"), "--save_stats", dir.file("s.npz")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--save_stats " + dir.file("s.npz") + " is --ref"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::filesystem::file_size(dir.file("s.npz")), before);
  r = test::run_idiff({"eval", "--ref", dir.file("s.npz"), "--samples", dir.file("s.npz"),
                       "--save_sample_stats", dir.path() + "/./s.npz"});
  EXPECT_NE(r.err.find("/./s.npz is --ref"), std::string::npos) << r.err;  // the same file
}

}  // namespace
}  // namespace idiff
