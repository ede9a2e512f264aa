// Feature statistics and the Fréchet Inception Distance (Heusel et al. 2017, "GANs
// Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"), as
// pytorch-fid's calculate_frechet_distance and guided-diffusion's evaluator compute it:
//
//   FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))
//
// with mu the mean and S the unbiased covariance (np.cov, ddof 1) of the pool features.
// Everything is float64.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace idiff {

// What a set of images is reduced to. features/logits are kept for precision/recall, KID
// and IS; a statistics file (pytorch-fid's mu/sigma npz) may lack them.
struct FeatureStats {
  int64_t count = 0;
  at::Tensor mu;        // [D] float64
  at::Tensor sigma;     // [D, D] float64
  at::Tensor features;  // [N, D] float32, or undefined
  at::Tensor logits;    // [N, 1008] float32, or undefined
};

// Mean and covariance accumulated batch by batch in float64 (sums of x and x x^T about
// the first batch's mean, which keeps the one-pass formula accurate), so the features
// need not be held to get them.
class StatsAccumulator {
 public:
  void add(const at::Tensor& features);  // [B, D], any floating dtype and device
  int64_t count() const { return count_; }
  // mu, sigma (ddof 1; needs at least two rows), count.
  FeatureStats finish() const;

 private:
  int64_t count_ = 0;
  at::Tensor shift_, sum_, outer_;
};

// mean and np.cov(features, rowvar=False) of [N, D] features, in float64.
FeatureStats feature_stats(const at::Tensor& features);

// The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2). ConfigError naming
// `what` when the shapes disagree.
double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2);

// tr((S1 S2)^(1/2)) for symmetric positive semi-definite S1, S2 (see fid.cpp).
double trace_sqrt_product(const at::Tensor& sigma1, const at::Tensor& sigma2);

// Statistics files: an npz with mu [D] and sigma [D, D] (pytorch-fid's --save-stats
// layout, so its files load here and ours there), plus features and logits when kept.
void save_stats(const std::string& path, const FeatureStats& stats);
FeatureStats load_stats(const std::string& path);
// Whether the npz at `path` holds statistics (mu and sigma) rather than images (arr_0).
bool is_stats_file(const std::string& path);

}  // namespace idiff
