// The sample-quality numbers besides FID, from Inception features and logits:
//   Inception Score (Salimans et al. 2016): exp E_x KL(p(y|x) || p(y)), averaged over
//     splits, as improved-gan's inception_score.py and guided-diffusion's evaluator;
//   precision and recall (Kynkäänniemi et al. 2019), the k-nearest-neighbour manifold
//     estimate of guided-diffusion's evaluator (ManifoldEstimator, k = 3);
//   Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 with the kernel
//     (x.y / d + 1)^3, averaged over random subsets (as torch-fidelity and TF-GAN).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace idiff {

struct MeanStd {
  double mean = 0;
  double std = 0;
};

// logits [N, C]; split k holds rows [k N / splits, (k + 1) N / splits). ConfigError when
// N < splits.
MeanStd inception_score(const at::Tensor& logits, int64_t splits = 10);

struct PrecisionRecall {
  double precision = 0;  // share of samples inside the reference manifold
  double recall = 0;     // share of reference images inside the sample manifold
};

// Each point's radius is the distance to its k-th nearest neighbour in its own set (itself
// excluded); a point is inside the other set's manifold when it lies within the radius of
// one of that set's points. Squared Euclidean distances in float32 (the evaluator tries
// float16 first), computed in blocks of `block` rows so memory stays O(block * N).
PrecisionRecall precision_recall(const at::Tensor& ref, const at::Tensor& samples, int64_t k = 3,
                                 int64_t block = 4096);

// radii [N]: the distance (squared) of each row to its k-th nearest other row.
at::Tensor manifold_radii(const at::Tensor& features, int64_t k, int64_t block = 4096);

// KID: `subsets` draws of min(subset_size, N1, N2) rows of each set without replacement
// (a CPU generator seeded with `seed`), the unbiased MMD^2 of each, mean and std.
MeanStd kernel_inception_distance(const at::Tensor& f1, const at::Tensor& f2, int64_t subsets = 100,
                                  int64_t subset_size = 1000, uint64_t seed = 0);

// The unbiased MMD^2 of two equal-sized sets with the polynomial kernel (one KID subset).
double polynomial_mmd2(const at::Tensor& x, const at::Tensor& y);

}  // namespace idiff
