// The `idiff eval` driver as a library call: embeds a reference set and a sample set with
// the FID Inception (or loads their cached statistics) and computes FID, Inception Score,
// precision/recall and KID, as guided-diffusion's evaluations/evaluator.py reports them
// (there with TensorFlow; here the same network through pytorch-fid's port).
#pragma once

#include "idiff/eval/fid.h"
#include "idiff/eval/image_source.h"
#include "idiff/eval/inception.h"
#include "idiff/eval/metrics.h"

#include <functional>
#include <optional>
#include <string>

namespace idiff {

// Features (pool) and logits of a batch of images [N, 3, H, W] in [0, 1].
using FeatureFn = std::function<InceptionOutputs(const at::Tensor& images01)>;

struct EvalConfig {
  std::string ref;      // npz sample file, image folder, or statistics npz
  std::string samples;  // same kinds; empty: only embed (and save) the reference
  std::string inception_path;
  std::string save_stats;         // the reference set's statistics, for reuse as --ref
  std::string save_sample_stats;  // the sample set's
  std::string device = "auto";
  int64_t batch_size = 64;
  int64_t is_splits = 10;
  int64_t pr_k = 3;
  int64_t kid_subsets = 100;
  int64_t kid_subset_size = 1000;
  uint64_t seed = 0;
  bool progress = true;
  // Set: the feature space instead of the FID Inception (idiff eval --feature_model: a
  // classifier's pooled activations), named by `feature_name` in the report.
  FeatureFn features;
  std::string feature_name;
};

struct EvalReport {
  int64_t ref_count = 0, sample_count = 0;
  std::optional<double> fid;
  std::optional<MeanStd> inception_score;  // of the samples
  std::optional<PrecisionRecall> precision_recall;
  std::optional<MeanStd> kid;
  std::vector<std::string> notes;  // why a number is missing
};

// Features (pool) and logits of every image of `source`, batch by batch on `device`;
// mu/sigma accumulated as the batches come (the images are never all held, the features
// and logits are, on the CPU, for precision/recall, KID and IS).
FeatureStats embed_images(ImageSource& source, const FeatureFn& net, const c10::Device& device,
                          int64_t batch_size, bool progress, const std::string& label);
FeatureStats embed_images(ImageSource& source, FIDInceptionV3& net, const c10::Device& device,
                          int64_t batch_size, bool progress, const std::string& label);

EvalReport evaluate(const EvalConfig& config);

// The report as printed by `idiff eval`: one "name: value" line per number.
std::string format_report(const EvalReport& report);

}  // namespace idiff
