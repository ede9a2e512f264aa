// `idiff tune-steps`: fits a step schedule to a checkpoint and a solver
// (diffusion/sampling/tune_steps.h) on calibration batches, and writes it for
// `idiff sample --steps_file`.
#pragma once

#include "idiff/config.h"
#include "idiff/diffusion/sampling/tune_steps.h"
#include "idiff/drivers/image_sample.h"

namespace idiff {

struct TuneJob {
  SampleJob job;  // model, diffusion and the sampler flags (--sampler, --steps, ...)
  TuneConfig tune;
  // The teacher's flags (its flags.json; teacher_flags false: an EDM network of the model's).
  bool teacher_flags = false;
  ModelConfig teacher_model;
  DiffusionConfig teacher_diffusion;
};

// Calibration: --num_samples x_T draws (seeded by --seed, in batches of --batch_size; random
// labels for a class-conditional model), each solved finely by --reference_sampler with
// --reference_steps logsnr steps; the error of a schedule is the RMS difference of the final
// samples ([-1, 1] scale) over all of them. Writes --steps_file; returns the search's result.
//
// A consistency model (--training_mode consistency_*, --sampler multistep) has no ODE of its
// own to fit: its --ts are searched, one index at a time from {0, steps - 1} up to
// --model_calls calls, against the fine Heun solution (--reference_steps, default 128) of
// --teacher_model_path from the same x_T at the model's sigma_max; the steps file holds the
// levels of the ts found (for `idiff sample --steps_file`) and the ts themselves.
TuneResult run_tune_steps(const TuneJob& job);
// The consistency-model branch of it (tune_ts.cpp).
TuneResult run_tune_ts(const TuneJob& job);

}  // namespace idiff
