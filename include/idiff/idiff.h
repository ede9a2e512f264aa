// idiff's public API in one include: improved-diffusion (Nichol & Dhariwal 2021) in C++17 on
// LibTorch, as a library. Link with idiff::idiff (find_package(idiff); README, "Embedding
// idiff"). The headers below are the public ones; everything under src/ is private.
//
//   settings     config.h: ModelConfig, DiffusionConfig, TrainConfig, SampleConfig with the
//                reference's defaults
//   models       model/factory.h (create_model, sr_create_model), model/unet.h,
//                model/state_dict.h (load a checkpoint into a model), model/inspect/infer_config.h
//   diffusion    diffusion/factory.h (create_gaussian_diffusion), gaussian_diffusion.h
//   sampling     diffusion/sampling/: sampler_registry.h (the samplers by name), solver.h
//                (make_solver), sample_loop.h (run_sampler), step_schedule.h, guidance.h
//   training     train/train_loop.h (TrainLoop), train/adamw.h
//   drivers      drivers/: the reference's scripts as calls: run_training, run_sampling,
//                run_nll, load_model, sampler_setup, run_tune_steps, guided_models
//   ranks        distributed/dist_context.h (DistContext: the ranks a driver shares work with)
//   files        io/tensor_file.h (.pt and .safetensors), io/npz.h, data/image_grid.h (PNG)
//   evaluation   eval/evaluator.h (FID, IS, precision/recall, KID)
//   errors       common/error.h (idiff::Error and its kinds)
#pragma once

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/rng.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/config.h"
#include "idiff/data/image_grid.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/gaussian_diffusion.h"
#include "idiff/diffusion/sampling/guidance.h"
#include "idiff/diffusion/sampling/sample_loop.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/diffusion/sampling/step_schedule.h"
#include "idiff/diffusion/sampling/tune_steps.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/drivers/guided_models.h"
#include "idiff/drivers/image_nll.h"
#include "idiff/drivers/image_sample.h"
#include "idiff/drivers/image_train.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/sampler_setup.h"
#include "idiff/drivers/tune_steps_driver.h"
#include "idiff/eval/evaluator.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"
#include "idiff/model/unet.h"
#include "idiff/train/train_loop.h"
