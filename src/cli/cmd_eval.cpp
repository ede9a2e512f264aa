// `idiff eval`: FID, Inception Score, precision/recall and KID of a sample set against a
// reference set (guided-diffusion's evaluations/evaluator.py, with pytorch-fid's
// Inception). Parses flags into EvalConfig; the work is idiff/eval/evaluator.h.
#include "command.h"
#include "flags.h"

#include "idiff/eval/evaluator.h"

#include <iostream>

namespace idiff::cli {
namespace {

void setup(CLI::App& sub) {
  auto c = std::make_shared<EvalConfig>();
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
  sub.callback([c] { std::cout << format_report(evaluate(*c)); });
}

const bool registered = register_command(
    {"eval", "FID, Inception Score, precision/recall and KID of samples against a reference", 60,
     setup});

}  // namespace
}  // namespace idiff::cli
