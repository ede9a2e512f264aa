// The training driver behind `idiff train` and `idiff super-res-train` (reference:
// scripts/image_train.py, scripts/super_res_train.py): builds the model, the diffusion,
// the timestep sampler, the data loader and the logger from the settings, then runs
// the TrainLoop. A C++ user can call it instead of the CLI.
#pragma once

#include "idiff/config.h"
#include "idiff/train/train_loop.h"

namespace idiff {

struct TrainJob {
  ModelConfig model;
  DiffusionConfig diffusion;
  TrainConfig train;
  bool super_res = false;  // train a SuperResModel at large_size on low-res copies at small_size
  // Consistency distillation from an improved-/guided-diffusion checkpoint: its own flags
  // (the flags.json beside it; teacher_flags false: the teacher is an EDM network of the
  // model's flags, as the reference's).
  bool teacher_flags = false;
  ModelConfig teacher_model;
  DiffusionConfig teacher_diffusion;
  // Asked after every step: a non-empty answer stops the run, saved (see StopCheck).
  StopCheck stop;
};

StopReason run_training(const TrainJob& job);

// Classifier-free guidance's label dropout: each label becomes the null label kNumClasses
// with probability p, drawn from (seed, step) alone, so a resumed run draws what a straight
// one did. labels: [N] int64 on the CPU.
at::Tensor drop_class_labels(const at::Tensor& labels, double p, uint64_t seed, int64_t step);

}  // namespace idiff
