// The sampling driver behind `idiff sample` and `idiff super-res-sample` (reference:
// scripts/image_sample.py, super_res_sample.py): loads a checkpoint into the model its
// flags describe, runs the sampling engine and writes the reference's output files into
// the log directory.
//
// Several processes share the work as the reference's scripts do over MPI: each rank
// samples (or evaluates its shard of the data) with its own noise, the results are
// gathered (or averaged) over the ranks, and rank 0 writes the one output file.
#pragma once

#include "idiff/config.h"
#include "idiff/model/unet.h"

#include <c10/core/Device.h>

#include <functional>
#include <string>

namespace idiff {

class DistContext;

struct SampleJob {
  ModelConfig model;
  DiffusionConfig diffusion;
  SampleConfig sample;
  ClassifierConfig classifier;  // with sample.classifier_path: classifier guidance
  bool super_res = false;
  // Asked after every round (one process alone): a non-empty answer (why, e.g. "SIGINT")
  // ends the run there, the finished samples written and marked partial.
  std::function<std::string()> stop;
};

struct SampleResult {
  at::Tensor images;      // [N, H, W, C] uint8 (C: --image_channels)
  at::Tensor labels;      // [N] int64, class-conditional models only
  std::string npz_path;   // samples_NxHxWx3.npz
  std::string grid_path;  // samples_grid.png ("" when --grid_size 0)
  std::string stopped;    // why the run ended early (job.stop's answer), else ""
};

// image_sample.py (super_res = false) or super_res_sample.py (true). `dist`: the ranks to
// share the work with, on its device; nullptr: those the launcher's variables describe
// (this process alone without them), on --device for this local rank, --dist_timeout
// bounding the waits. Each rank samples up to
// --batch_size images per round with the generator seeded from --seed and its rank
// (rank 0: --seed itself, so one process is unchanged); exactly --num_samples images are
// gathered, in the order (round, rank). Every rank returns them all; only rank 0 writes
// files (npz_path and grid_path are empty elsewhere).
SampleResult run_sampling(const SampleJob& job, DistContext* dist = nullptr);

}  // namespace idiff
