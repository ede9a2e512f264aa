#include "idiff/eval/evaluator.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/progress.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

namespace idiff {
namespace {

// A statistics npz (mu, sigma, no arr_0); anything else, readable or not, is left to
// ImageSource::open, whose errors name the flag.
bool is_npz_stats(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  try {
    return is_stats_file(path);
  } catch (const FileError&) {
    return false;
  }
}

class Embedder {
 public:
  Embedder(const EvalConfig& c) : config_(c), device_(resolve_device(c.device)) {}

  // A statistics file as it is, or the images embedded.
  FeatureStats stats_of(const std::string& path, const std::string& flag) {
    IDIFF_REQUIRE(!path.empty(), ConfigError, flag, " is required");
    if (is_npz_stats(path)) return load_stats(path);
    auto source = ImageSource::open(path, flag);
    if (config_.features) {
      std::cerr << "embedding " << source->describe() << " with " << config_.feature_name << "\n";
      return embed_images(*source, config_.features, device_, config_.batch_size, config_.progress,
                          flag);
    }
    if (!net_) net_ = load_fid_inception(config_.inception_path, device_);
    std::cerr << "embedding " << source->describe() << " on " << describe_device(device_) << "\n";
    return embed_images(*source, *net_, device_, config_.batch_size, config_.progress, flag);
  }

 private:
  const EvalConfig& config_;
  c10::Device device_;
  std::optional<FIDInceptionV3> net_;
};

}  // namespace

FeatureStats embed_images(ImageSource& source, FIDInceptionV3& net, const c10::Device& device,
                          int64_t batch_size, bool progress, const std::string& label) {
  return embed_images(
      source, [&net](const at::Tensor& x) { return net->forward(x); }, device, batch_size, progress,
      label);
}

FeatureStats embed_images(ImageSource& source, const FeatureFn& net, const c10::Device& device,
                          int64_t batch_size, bool progress, const std::string& label) {
  IDIFF_REQUIRE(batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ", batch_size);
  c10::InferenceMode guard;
  StatsAccumulator acc;
  // Filled in place, batch by batch: concatenating at the end would hold them twice.
  at::Tensor features, logits;
  ProgressBar bar(label, source.size(), progress);
  for (at::Tensor batch = source.next(batch_size); batch.defined() && batch.size(0) > 0;
       batch = source.next(batch_size)) {
    const InceptionOutputs out = net(batch.to(device));
    if (!features.defined()) {
      features = at::empty({source.size(), out.pool.size(1)}, at::kFloat);
      logits = at::empty({source.size(), out.logits.size(1)}, at::kFloat);
    }
    const int64_t done = acc.count(), n = out.pool.size(0);
    TORCH_CHECK(done + n <= source.size(), "embed_images: the source gave more images than it has");
    features.slice(0, done, done + n).copy_(out.pool);
    logits.slice(0, done, done + n).copy_(out.logits);
    acc.add(out.pool);
    bar.update(acc.count());
  }
  bar.finish();
  IDIFF_REQUIRE(acc.count() >= 2, ConfigError, label, ": ", source.describe(), " gave ",
                acc.count(), " image", acc.count() == 1 ? "" : "s",
                "; its statistics (a mean and covariance) need at least 2");
  FeatureStats s = acc.finish();
  s.features = features.slice(0, 0, s.count);
  s.logits = logits.slice(0, 0, s.count);
  return s;
}

namespace {

// Whether two paths name one file (or would, once written).
bool same_path(const std::string& a, const std::string& b) {
  std::error_code ea, eb;
  const auto ca = std::filesystem::weakly_canonical(a, ea),
             cb = std::filesystem::weakly_canonical(b, eb);
  return ea || eb ? a == b : ca == cb;
}

// A statistics output that is an input would overwrite it (the reference images with their
// statistics): refused before any work.
void check_outputs_are_not_inputs(const EvalConfig& c) {
  const std::vector<std::pair<const char*, std::string>> outputs = {
      {"`save_stats`", c.save_stats}, {"`save_sample_stats`", c.save_sample_stats}};
  const std::vector<std::pair<const char*, std::string>> inputs = {{"`ref`", c.ref},
                                                                   {"`samples`", c.samples}};
  for (const auto& [out_flag, out] : outputs) {
    if (out.empty()) continue;
    for (const auto& [in_flag, in] : inputs) {
      IDIFF_REQUIRE(in.empty() || !same_path(out, in), ConfigError, out_flag, " ", out, " is ",
                    in_flag, ": writing the statistics would overwrite the input");
    }
  }
  IDIFF_REQUIRE(c.save_stats.empty() || !same_path(c.save_stats, c.save_sample_stats), ConfigError,
                "`save_stats` and `save_sample_stats` name one file: ", c.save_stats);
  for (const auto& [flag, out] : outputs)
    if (!out.empty()) check_output_file(out, flag);
}

}  // namespace

EvalReport evaluate(const EvalConfig& c) {
  IDIFF_REQUIRE(!c.samples.empty() || !c.save_stats.empty(), ConfigError,
                "`samples` is required (or `save_stats` alone, to cache the reference set)");
  check_outputs_are_not_inputs(c);
  Embedder embedder(c);
  EvalReport r;
  const FeatureStats ref = embedder.stats_of(c.ref, "`ref`");
  r.ref_count = ref.count;
  if (!c.save_stats.empty()) save_stats(c.save_stats, ref);
  if (c.samples.empty()) return r;

  const FeatureStats sam = embedder.stats_of(c.samples, "`samples`");
  r.sample_count = sam.count;
  if (!c.save_sample_stats.empty()) save_stats(c.save_sample_stats, sam);

  IDIFF_REQUIRE(ref.mu.size(0) == sam.mu.size(0), ConfigError, "`ref` has ", ref.mu.size(0),
                "-dimensional features and `samples` ", sam.mu.size(0),
                ": statistics of two feature spaces (the Inception's and a `feature_model`'s?)");
  r.fid = frechet_distance(ref.mu, ref.sigma, sam.mu, sam.sigma);
  if (c.features) {
    r.notes.push_back(str("FID, precision/recall and KID in the feature space of ", c.feature_name,
                          "; Inception Score needs the Inception network"));
  } else if (sam.logits.defined() && sam.logits.size(0) >= c.is_splits) {
    r.inception_score = inception_score(sam.logits, c.is_splits);
  } else {
    r.notes.push_back(str("Inception Score: needs the samples' logits and at least ", c.is_splits,
                          " images (`is_splits`)"));
  }
  if (ref.features.defined() && sam.features.defined()) {
    if (ref.count > c.pr_k && sam.count > c.pr_k) {
      r.precision_recall = precision_recall(ref.features, sam.features, c.pr_k);
    } else {
      r.notes.push_back(str("precision/recall: needs more than ", c.pr_k, " images per set"));
    }
    r.kid = kernel_inception_distance(ref.features, sam.features, c.kid_subsets, c.kid_subset_size,
                                      c.seed);
  } else {
    r.notes.push_back(
        "precision/recall and KID: need the features of both sets (a statistics file with "
        "mu and sigma only has none)");
  }
  return r;
}

std::string format_report(const EvalReport& r) {
  std::ostringstream os;
  os << std::setprecision(6) << std::fixed;
  os << "reference images: " << r.ref_count << "\n";
  if (r.sample_count) os << "sample images: " << r.sample_count << "\n";
  if (r.fid) os << "FID: " << *r.fid << "\n";
  if (r.inception_score)
    os << "Inception Score: " << r.inception_score->mean << " (std " << r.inception_score->std
       << ")\n";
  if (r.precision_recall) {
    os << "Precision: " << r.precision_recall->precision << "\n";
    os << "Recall: " << r.precision_recall->recall << "\n";
  }
  if (r.kid) os << "KID: " << r.kid->mean << " (std " << r.kid->std << ")\n";
  for (const auto& n : r.notes) os << "note: " << n << "\n";
  return os.str();
}

}  // namespace idiff
