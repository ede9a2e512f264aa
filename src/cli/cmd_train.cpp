// `idiff train` (reference: scripts/image_train.py) and `idiff super-res-train`
// (scripts/super_res_train.py): flags -> TrainJob -> run_training.
#include "command.h"
#include "flags.h"

#include "signals.h"

#include "idiff/common/error.h"
#include "idiff/common/runtime_tuning.h"
#include "idiff/diffusion/factory.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/drivers/image_train.h"
#include "idiff/drivers/load_model.h"

namespace idiff::cli {
namespace {

enum class Kind { Train, SuperRes, Edm, Consistency };

// cm-train distils (consistency distillation, progressive distillation) or trains
// consistency models; consistency training takes no teacher flag.
void check_consistency_mode(const CLI::App& sub, const std::string& mode) {
  IDIFF_REQUIRE(is_consistency(mode) || mode == "progdist", ConfigError,
                "`training_mode`: idiff cm-train trains consistency_distillation, "
                "consistency_training or progdist, got ",
                mode, mode == "edm" ? " (EDM models: idiff edm-train)" : "");
  for (const char* flag : {"teacher_dropout", "guidance_scale"}) {
    const CLI::Option* given = sub.get_option_no_throw(str("--", flag));
    IDIFF_REQUIRE(mode != "consistency_training" || given == nullptr || given->count() == 0,
                  ConfigError, "`", flag, "` is for a teacher; ", "consistency_training has none");
  }
}

void setup(CLI::App& sub, Kind kind) {
  auto job = std::make_shared<TrainJob>();
  const bool super_res = kind == Kind::SuperRes;
  job->super_res = super_res;
  if (kind == Kind::Edm) {
    // scripts/edm_train.py: consistency_models' model defaults and its EDM objective.
    job->diffusion.defaults = "consistency-models";
    job->diffusion.training_mode = "edm";
    job->train.schedule_sampler = "lognormal";
    job->train.optimizer = "radam";  // consistency_models' TrainLoop
  }
  if (kind == Kind::Consistency) {
    // scripts/cm_train.py: consistency_models' model defaults, distillation by default.
    job->diffusion.defaults = "consistency-models";
    job->diffusion.training_mode = "consistency_distillation";
    job->train.optimizer = "radam";  // consistency_models' CMTrainLoop
  }
  if (super_res) {
    // sr_model_and_diffusion_defaults: the upsampler's sizes.
    job->model.large_size = 256;
    job->model.small_size = 64;
  }
  add_train_flags(sub, job->train);
  add_model_and_diffusion_flags(sub, job->model, job->diffusion, super_res);
  if (kind == Kind::Consistency) add_consistency_train_flags(sub, job->train);
  sub.callback([job, &sub, kind] {
    if (kind == Kind::Consistency) {
      check_consistency_mode(sub, job->diffusion.training_mode);
      job->teacher_flags = read_teacher_flags(job->train.teacher_model_path, job->teacher_model,
                                              job->teacher_diffusion);
    }
    // What the library leaves to its caller: the stop signals, and tuning the process for
    // its device (allocator reuse on the CPU, cuDNN autotuning on CUDA).
    install_stop_signal_handlers();
    job->stop = stop_signal_name;
    tune_for_device(DistContext::device_for_local_rank(job->train.device));
    run_training(*job);
  });
}

const bool registered_train =
    register_command({"train", "train a diffusion model on images (scripts/image_train.py)", 10,
                      [](CLI::App& sub) { setup(sub, Kind::Train); }});
const bool registered_sr = register_command(
    {"super-res-train", "train a super-resolution model (scripts/super_res_train.py)", 30,
     [](CLI::App& sub) { setup(sub, Kind::SuperRes); }});
const bool registered_edm = register_command(
    {"edm-train",
     "train an EDM model (consistency_models' scripts/edm_train.py; = train --training_mode edm)",
     35, [](CLI::App& sub) { setup(sub, Kind::Edm); }});
const bool registered_cm = register_command(
    {"cm-train",
     "distil an EDM model into a consistency model, or train one (consistency_models' "
     "scripts/cm_train.py)",
     36, [](CLI::App& sub) { setup(sub, Kind::Consistency); }});

}  // namespace
}  // namespace idiff::cli
