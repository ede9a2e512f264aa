#include "idiff/eval/metrics.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace idiff {
namespace {

MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  for (double x : v) r.mean += x;
  r.mean /= static_cast<double>(v.size());
  for (double x : v) r.std += (x - r.mean) * (x - r.mean);
  r.std = std::sqrt(r.std / static_cast<double>(v.size()));  // np.std (ddof 0)
  return r;
}

// |a_i - b_j|^2 = |a_i|^2 - 2 a_i.b_j + |b_j|^2, clamped at 0 as the evaluator does.
at::Tensor pairwise_sq_distances(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor na = a.pow(2).sum(1, true), nb = b.pow(2).sum(1, true);
  return (na - 2 * at::matmul(a, b.t()) + nb.t()).clamp_min(0);
}

}  // namespace

MeanStd inception_score(const at::Tensor& logits, int64_t splits) {
  TORCH_CHECK(logits.dim() == 2, "inception_score: logits must be [N, C]");
  const int64_t n = logits.size(0);
  IDIFF_REQUIRE(splits >= 1 && n >= splits, ConfigError, "Inception Score: ", n,
                " images cannot be cut into ", splits, " splits");
  const at::Tensor p = at::softmax(logits.to(at::kDouble), 1);
  std::vector<double> scores;
  for (int64_t k = 0; k < splits; ++k) {
    const at::Tensor part = p.slice(0, k * n / splits, (k + 1) * n / splits);
    const at::Tensor py = part.mean(0, true);
    // KL(p(y|x) || p(y)) per image; xlogy makes 0 log 0 = 0.
    const at::Tensor kl = (at::xlogy(part, part) - at::xlogy(part, py)).sum(1);
    scores.push_back(std::exp(kl.mean().item<double>()));
  }
  return mean_std(scores);
}

at::Tensor manifold_radii(const at::Tensor& features, int64_t k, int64_t block) {
  const int64_t n = features.size(0);
  IDIFF_REQUIRE(k >= 1 && n > k, ConfigError, "precision/recall: a set of ", n, " images has no ",
                k, "-th nearest neighbour (needs more than ", k, " images)");
  const at::Tensor f = features.to(at::kFloat);
  std::vector<at::Tensor> radii;
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const at::Tensor rows = f.slice(0, r0, std::min(n, r0 + block));
    // The k+1 smallest distances of each row over all columns (itself, at 0, included).
    at::Tensor best;
    for (int64_t c0 = 0; c0 < n; c0 += block) {
      at::Tensor d = pairwise_sq_distances(rows, f.slice(0, c0, std::min(n, c0 + block)));
      if (best.defined()) d = at::cat({best, d}, 1);
      best = std::get<0>(d.topk(std::min<int64_t>(k + 1, d.size(1)), 1, /*largest=*/false));
    }
    radii.push_back(std::get<0>(best.max(1)));  // the (k+1)-th smallest: the k-th neighbour
  }
  return at::cat(radii);
}

PrecisionRecall precision_recall(const at::Tensor& ref, const at::Tensor& samples, int64_t k,
                                 int64_t block) {
  IDIFF_REQUIRE(ref.dim() == 2 && samples.dim() == 2 && ref.size(1) == samples.size(1), ConfigError,
                "precision/recall: feature sets of shape ", ref.sizes(), " and ", samples.sizes(),
                " do not match");
  const at::Tensor r = ref.to(at::kFloat), s = samples.to(at::kFloat);
  const at::Tensor r_radii = manifold_radii(r, k, block), s_radii = manifold_radii(s, k, block);
  at::Tensor s_in = at::zeros({s.size(0)}, r.options().dtype(at::kBool));
  at::Tensor r_in = at::zeros({r.size(0)}, r.options().dtype(at::kBool));
  for (int64_t i0 = 0; i0 < s.size(0); i0 += block) {
    const int64_t i1 = std::min(s.size(0), i0 + block);
    for (int64_t j0 = 0; j0 < r.size(0); j0 += block) {
      const int64_t j1 = std::min(r.size(0), j0 + block);
      const at::Tensor d = pairwise_sq_distances(s.slice(0, i0, i1), r.slice(0, j0, j1));
      // sample i inside the reference manifold: within some reference point's radius
      s_in.slice(0, i0, i1).logical_or_((d <= r_radii.slice(0, j0, j1).unsqueeze(0)).any(1));
      // reference j inside the sample manifold: within some sample's radius
      r_in.slice(0, j0, j1).logical_or_((d <= s_radii.slice(0, i0, i1).unsqueeze(1)).any(0));
    }
  }
  PrecisionRecall pr;
  pr.precision = s_in.to(at::kDouble).mean().item<double>();
  pr.recall = r_in.to(at::kDouble).mean().item<double>();
  return pr;
}

double polynomial_mmd2(const at::Tensor& x, const at::Tensor& y) {
  const int64_t m = x.size(0), d = x.size(1);
  TORCH_CHECK(y.size(0) == m && y.size(1) == d && m >= 2, "polynomial_mmd2: sets must match");
  const at::Tensor a = x.to(at::kDouble), b = y.to(at::kDouble);
  auto kernel = [d](const at::Tensor& u, const at::Tensor& v) {
    return (at::matmul(u, v.t()) / static_cast<double>(d) + 1).pow(3);
  };
  const at::Tensor kxx = kernel(a, a), kyy = kernel(b, b), kxy = kernel(a, b);
  const double mm = static_cast<double>(m);
  // Unbiased: the diagonals of K_XX and K_YY left out.
  const double sxx = (kxx.sum() - kxx.diagonal().sum()).item<double>();
  const double syy = (kyy.sum() - kyy.diagonal().sum()).item<double>();
  const double sxy = kxy.sum().item<double>();
  return (sxx + syy) / (mm * (mm - 1)) - 2 * sxy / (mm * mm);
}

MeanStd kernel_inception_distance(const at::Tensor& f1, const at::Tensor& f2, int64_t subsets,
                                  int64_t subset_size, uint64_t seed) {
  IDIFF_REQUIRE(f1.dim() == 2 && f2.dim() == 2 && f1.size(1) == f2.size(1), ConfigError,
                "KID: feature sets of shape ", f1.sizes(), " and ", f2.sizes(), " do not match");
  const int64_t m = std::min({subset_size, f1.size(0), f2.size(0)});
  IDIFF_REQUIRE(subsets >= 1 && m >= 2, ConfigError, "KID needs at least 2 images per set and ",
                "one subset, got ", f1.size(0), " and ", f2.size(0));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<double> values;
  for (int64_t i = 0; i < subsets; ++i) {
    const at::Tensor i1 = at::randperm(f1.size(0), gen, at::kLong).slice(0, 0, m);
    const at::Tensor i2 = at::randperm(f2.size(0), gen, at::kLong).slice(0, 0, m);
    values.push_back(polynomial_mmd2(f1.index_select(0, i1.to(f1.device())),
                                     f2.index_select(0, i2.to(f2.device()))));
  }
  return mean_std(values);
}

}  // namespace idiff
