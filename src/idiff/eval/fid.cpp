#include "idiff/eval/fid.h"

#include "idiff/common/error.h"
#include "idiff/io/npz.h"
#include "idiff/io/npz_stream.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace idiff {

void StatsAccumulator::add(const at::Tensor& features) {
  TORCH_CHECK(features.dim() == 2, "StatsAccumulator: features must be [B, D], got ",
              features.sizes());
  if (features.size(0) == 0) return;
  at::Tensor x = features.to(at::kDouble);
  if (!shift_.defined()) {
    shift_ = x.mean(0);
    sum_ = at::zeros_like(shift_);
    outer_ = at::zeros({x.size(1), x.size(1)}, x.options());
  }
  TORCH_CHECK(x.size(1) == shift_.size(0), "StatsAccumulator: feature width changed from ",
              shift_.size(0), " to ", x.size(1));
  at::Tensor y = x - shift_;
  sum_ += y.sum(0);
  outer_.addmm_(y.t(), y);
  count_ += x.size(0);
}

FeatureStats StatsAccumulator::finish() const {
  IDIFF_REQUIRE(count_ >= 2, ConfigError, "FID statistics need at least 2 images, got ", count_);
  FeatureStats s;
  s.count = count_;
  const double n = static_cast<double>(count_);
  at::Tensor m = sum_ / n;
  at::Tensor cov = (outer_ - at::outer(m, m) * n) / (n - 1);
  s.sigma = ((cov + cov.t()) * 0.5).cpu();
  s.mu = (shift_ + m).cpu();
  return s;
}

FeatureStats feature_stats(const at::Tensor& features) {
  StatsAccumulator acc;
  acc.add(features);
  return acc.finish();
}

// tr((S1 S2)^(1/2)) by two symmetric eigendecompositions, in float64:
//   S1 = V diag(l) V^T,  R = V diag(sqrt(l)) V^T  (the PSD square root of S1)
//   tr((S1 S2)^(1/2)) = sum_i sqrt(e_i),  e = eigvalsh(R S2 R)
// S1 S2 = R (R S2) and R S2 R share their non-zero eigenvalues (AB and BA do), and R S2 R
// is symmetric PSD, so its eigenvalues are real and non-negative. Rounding leaves the
// zero eigenvalues of a singular matrix at about +-D eps |S|, whose square roots
// (sqrt(eps) |S|^(1/2) each) would add up to a visible error; eigenvalues below numpy's
// rank tolerance (largest * D * eps, as np.linalg.matrix_rank) are therefore taken as 0.
// Why not scipy's sqrtm (a Schur method on the non-symmetric product, what pytorch-fid
// calls): with fewer images than dimensions the covariances are singular, S1 S2 then may
// have no square root (non-trivial Jordan blocks at 0), sqrtm returns complex or
// non-finite values and pytorch-fid retries with 1e-6 added to the diagonals. Here
// singular covariances need no offset: their zero eigenvalues contribute 0, the limit the
// offset approximates. Cost: two eigh of D x D (D = 2048: seconds on two cores).
namespace {

at::Tensor psd_eigenvalues(const at::Tensor& eigenvalues) {
  const double tol = eigenvalues.abs().max().item<double>() * eigenvalues.size(0) *
                     std::numeric_limits<double>::epsilon();
  return at::where(eigenvalues > tol, eigenvalues, at::zeros_like(eigenvalues));
}

}  // namespace

double trace_sqrt_product(const at::Tensor& sigma1, const at::Tensor& sigma2) {
  const at::Tensor s1 = sigma1.to(at::kDouble), s2 = sigma2.to(at::kDouble);
  auto [l, v] = at::linalg_eigh(s1);
  const at::Tensor r = at::matmul(v * psd_eigenvalues(l).sqrt(), v.t());
  at::Tensor m = at::matmul(at::matmul(r, s2), r);
  m = (m + m.t()) * 0.5;
  return psd_eigenvalues(at::linalg_eigvalsh(m)).sqrt().sum().item<double>();
}

double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2) {
  IDIFF_REQUIRE(mu1.dim() == 1 && mu2.dim() == 1 && mu1.size(0) == mu2.size(0), ConfigError,
                "FID: the two sets' means differ in shape (", mu1.sizes(), " and ", mu2.sizes(),
                "): were they computed with the same network and layer?");
  const int64_t d = mu1.size(0);
  IDIFF_REQUIRE(
      sigma1.sizes() == at::IntArrayRef({d, d}) && sigma2.sizes() == at::IntArrayRef({d, d}),
      ConfigError, "FID: covariances of shape ", sigma1.sizes(), " and ", sigma2.sizes(),
      " do not match means of ", d, " features");
  const at::Tensor diff = mu1.to(at::kDouble) - mu2.to(at::kDouble);
  const double tr1 = sigma1.to(at::kDouble).trace().item<double>();
  const double tr2 = sigma2.to(at::kDouble).trace().item<double>();
  return diff.dot(diff).item<double>() + tr1 + tr2 - 2 * trace_sqrt_product(sigma1, sigma2);
}

void save_stats(const std::string& path, const FeatureStats& stats) {
  TensorMap m;
  m.insert("mu", stats.mu.to(at::kDouble).cpu().contiguous());
  m.insert("sigma", stats.sigma.to(at::kDouble).cpu().contiguous());
  m.insert("count", at::full({1}, stats.count, at::kLong));
  if (stats.features.defined())
    m.insert("features", stats.features.to(at::kFloat).cpu().contiguous());
  if (stats.logits.defined()) m.insert("logits", stats.logits.to(at::kFloat).cpu().contiguous());
  write_npz(path, m);
}

bool is_stats_file(const std::string& path) {
  const auto keys = npz_keys(path);
  auto has = [&](const char* k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
  return has("mu") && has("sigma") && !has("arr_0");
}

FeatureStats load_stats(const std::string& path) {
  const TensorMap m = read_npz(path);
  FeatureStats s;
  const at::Tensor& mu = m.at("mu", path);
  const at::Tensor& sigma = m.at("sigma", path);
  IDIFF_REQUIRE(mu.is_floating_point() && mu.dim() == 1 && sigma.is_floating_point() &&
                    sigma.dim() == 2 && sigma.size(0) == mu.size(0) && sigma.size(1) == mu.size(0),
                FileError, path, ": statistics need mu [D] and sigma [D, D] (floating), found ",
                mu.sizes(), " and ", sigma.sizes());
  s.mu = mu.to(at::kDouble);
  s.sigma = sigma.to(at::kDouble);
  // A covariance is finite and symmetric; anything else would give a meaningless FID.
  IDIFF_REQUIRE(at::isfinite(s.mu).all().item<bool>() && at::isfinite(s.sigma).all().item<bool>(),
                FileError, path, ": mu and sigma must be finite (found NaN or infinity)");
  const double asymmetry = (s.sigma - s.sigma.t()).abs().max().item<double>();
  const double scale = std::max(1.0, s.sigma.abs().max().item<double>());
  IDIFF_REQUIRE(asymmetry <= 1e-6 * scale, FileError, path,
                ": sigma is not a covariance (not symmetric: |sigma - sigma^T| reaches ", asymmetry,
                ")");
  if (m.contains("features")) {
    const at::Tensor& f = m.at("features", path);
    IDIFF_REQUIRE(f.is_floating_point() && f.dim() == 2 && f.size(1) == mu.size(0), FileError, path,
                  ": features must be [N, ", mu.size(0), "], found ", f.sizes());
    s.features = f.to(at::kFloat);
    s.count = f.size(0);
  }
  if (m.contains("logits")) {
    const at::Tensor& l = m.at("logits", path);
    IDIFF_REQUIRE(l.is_floating_point() && l.dim() == 2, FileError, path,
                  ": logits must be [N, classes], found ", l.sizes());
    s.logits = l.to(at::kFloat);
  }
  if (m.contains("count") && m.at("count", path).numel() == 1)
    s.count = m.at("count", path).to(at::kLong).item<int64_t>();
  return s;
}

}  // namespace idiff
