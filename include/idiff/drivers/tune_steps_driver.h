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
};

// Calibration: --num_samples x_T draws (seeded by --seed, in batches of --batch_size; random
// labels for a class-conditional model), each solved finely by --reference_sampler with
// --reference_steps logsnr steps; the error of a schedule is the RMS difference of the final
// samples ([-1, 1] scale) over all of them. Writes --steps_file; returns the search's result.
TuneResult run_tune_steps(const TuneJob& job);

}  // namespace idiff
