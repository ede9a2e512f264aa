// `idiff eval`: FID, Inception Score, precision/recall and KID of a sample set against a
// reference set (guided-diffusion's evaluations/evaluator.py, with pytorch-fid's
// Inception). Parses flags into EvalConfig; the work is idiff/eval/evaluator.h.
#include "command.h"
#include "flags.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/data/data_loader.h"
#include "idiff/drivers/load_model.h"
#include "idiff/eval/evaluator.h"

#include <ATen/ATen.h>

#include <iostream>

namespace idiff::cli {
namespace {

struct FeatureModel {
  std::string path;
  ClassifierConfig classifier;
  int64_t image_size = 64, image_channels = 3;
};

// --feature_model: a noisy-image classifier's pooled activations at t = 0 (and its logits),
// on images scaled to [-1, 1] as the classifier was trained on them.
FeatureFn classifier_features(const FeatureModel& fm, const c10::Device& device) {
  IDIFF_REQUIRE(fm.image_channels == 1 || fm.image_channels == 3, ConfigError,
                "`image_channels` must be 1 or 3, got ", fm.image_channels);
  EncoderUNetModel net =
      load_classifier(fm.classifier, fm.image_size, fm.image_channels, fm.path, device);
  return [net, fm, device](const at::Tensor& images01) mutable {
    IDIFF_REQUIRE(images01.size(2) == fm.image_size && images01.size(3) == fm.image_size,
                  ConfigError, "`feature_model` ", fm.path, " is a classifier of ", fm.image_size,
                  "x", fm.image_size, " images (`image_size`), but these are ", images01.size(2),
                  "x", images01.size(3));
    at::Tensor x = images01 * 2 - 1;
    if (fm.image_channels == 1) x = rgb_to_grey(x);
    x = x.to(device);
    const at::Tensor f =
        net->pooled_features(x, at::zeros({x.size(0)}, x.options().dtype(at::kLong)));
    return InceptionOutputs{f.to(at::kFloat).cpu(), net->head(f).to(at::kFloat).cpu()};
  };
}

void setup(CLI::App& sub) {
  auto c = std::make_shared<EvalConfig>();
  auto fm = std::make_shared<FeatureModel>();
  Flags f(sub);
  f.add("ref", c->ref,
        "reference set: .npz sample file (arr_0), image folder, or statistics .npz (mu, sigma)");
  f.add("samples", c->samples, "sample set: same kinds as --ref");
  f.add("inception_path", c->inception_path,
        std::string("pytorch-fid's FID Inception weights, ") + kInceptionWeightsUrl);
  f.add("save_stats", c->save_stats,
        "write the reference set's statistics (mu, sigma, features) here, for later --ref");
  f.add("save_sample_stats", c->save_sample_stats, "write the sample set's statistics here");
  f.add("batch_size", c->batch_size, kBatchRange, "images per Inception batch");
  f.add("device", c->device, "auto, cpu, cuda or cuda:N");
  f.add("is_splits", c->is_splits, {1, 1000000}, "Inception Score splits");
  f.add("pr_k", c->pr_k, {1, 1000000}, "precision/recall: k of the k-nearest-neighbour radii");
  f.add("kid_subsets", c->kid_subsets, {1, 1000000}, "KID: number of random subsets");
  f.add("kid_subset_size", c->kid_subset_size, {2, 1000000000},
        "KID: images per subset (at most the set sizes)");
  f.add("seed", c->seed, "KID: seed of the subset draws");
  f.add("progress", c->progress, "progress bar on a terminal");
  const std::string g = "Feature model (instead of the Inception)";
  f.add("feature_model", fm->path,
        "a classifier checkpoint (idiff classifier-train's or guided-diffusion's): FID, "
        "precision/recall and KID in its pooled features at t = 0, for data unlike ImageNet")
      ->group(g);
  f.add("image_size", fm->image_size, kImageSideRange, "the feature model's image size")->group(g);
  f.add("image_channels", fm->image_channels, {1, 3}, "its input channels (1: grey)")->group(g);
  add_classifier_flags(f, fm->classifier);
  sub.callback([c, fm] {
    if (!fm->path.empty()) {
      c->features = classifier_features(*fm, resolve_device(c->device));
      c->feature_name = "the classifier " + fm->path;
    }
    std::cout << format_report(evaluate(*c));
  });
}

const bool registered = register_command(
    {"eval", "FID, Inception Score, precision/recall and KID of samples against a reference", 60,
     setup});

}  // namespace
}  // namespace idiff::cli
