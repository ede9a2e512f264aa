// The classifier training driver behind `idiff classifier-train` (guided-diffusion's
// scripts/classifier_train.py): a noisy-image classifier (EncoderUNetModel) trained with
// cross-entropy on training images noised by the diffusion at timesteps from the schedule
// sampler (clean images with --noised False), validation loss and accuracy every
// --eval_interval steps, checkpoints model%06d.pt / opt%06d.pt as the reference names them.
// One process (the reference's data-parallel training is not mirrored here).
#pragma once

#include "idiff/config.h"
#include "idiff/train/train_loop.h"

#include <map>
#include <string>

namespace idiff {

struct ClassifierTrainJob {
  ModelConfig model;  // image_size and image_channels
  ClassifierConfig classifier;
  DiffusionConfig diffusion;
  ClassifierTrainConfig train;
  StopCheck stop;  // asked after every step: non-empty stops the run, saved
};

struct ClassifierTrainResult {
  int64_t step = 0;  // completed steps (the last checkpoint's number)
  std::string log_dir;
  std::map<std::string, double> last_logged;  // train_loss, train_acc@1, val_loss, ...
};

// Checkpoint NNNNNN holds the classifier after NNNNNN steps (as `idiff train` counts);
// resuming from it continues with the data and random draws a straight run would see.
ClassifierTrainResult run_classifier_training(const ClassifierTrainJob& job);

}  // namespace idiff
