// The evaluation driver behind `idiff nll` (reference: scripts/image_nll.py): bits/dim of
// a data folder under a checkpoint, and the per-step terms, written as the reference does.
#pragma once

#include "idiff/drivers/image_sample.h"

namespace idiff {

struct NllResult {
  double bpd = 0.0;  // mean total bits/dim over the evaluated images
  int64_t num_images = 0;
  at::Tensor vb, mse, xstart_mse;  // [T] per-step terms averaged over the images
  std::string dir;                 // where {vb,mse,xstart_mse}_terms.npz were written
};

// image_nll.py: bits/dim of --data_dir under the model (calc_bpd_loop). With several ranks
// (`dist` as for run_sampling) each evaluates --batch_size images of its shard per round,
// the batch means are averaged over the ranks, and rounds go on until --num_samples
// images are done in all; rank 0 writes the terms.
NllResult run_nll(const SampleJob& job, DistContext* dist = nullptr);

}  // namespace idiff
