// The training objectives by name (training_objective.h). To add one: its TrainingObjective
// in a file of its own, and one row below; `--training_mode`, its help and the README
// table follow.
#include "idiff/common/error.h"
#include "idiff/common/rng.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/model/factory.h"
#include "idiff/train/training_objective.h"

namespace idiff {
namespace {

// A network of the model's architecture for the consistency objectives' target and
// progressive distillation's later teachers (its weights are the model's once training
// starts), made without moving the caller's random streams.
UNetModel target_network(const ObjectiveContext& c) {
  const ScopedSeed seed(c.train.seed, c10::kCPU);
  return create_model(c.model);
}

}  // namespace

const std::vector<ObjectiveRow>& objective_registry() {
  static const std::vector<ObjectiveRow> rows = {
      {"improved_diffusion",
       "improved-diffusion's loss: hybrid (learned sigmas), KL or MSE by the diffusion flags, at "
       "timesteps from --schedule_sampler",
       [](const ObjectiveContext& c) {
         return make_diffusion_objective(
             c.diffusion, create_named_schedule_sampler(c.train.schedule_sampler, c.diffusion));
       }},
      {"edm",
       "consistency_models' EDM loss: the Karras denoiser's weighted squared error at lognormal "
       "noise levels (--schedule_sampler lognormal)",
       [](const ObjectiveContext& c) {
         IDIFF_REQUIRE(
             c.train.schedule_sampler == "lognormal" || c.train.schedule_sampler == "uniform",
             ConfigError,
             "`training_mode` edm draws its noise levels by `schedule_sampler` "
             "lognormal, got '",
             c.train.schedule_sampler, "'");
         return make_edm_objective(karras_params(c.config));
       }},
      {"consistency_distillation",
       "consistency_models' consistency distillation: the model matches its target network "
       "one teacher Heun step closer to the data (--teacher_model_path, an EDM model)",
       [](const ObjectiveContext& c) {
         IDIFF_REQUIRE(!!c.teacher, ConfigError,
                       "`training_mode` consistency_distillation needs `teacher_model_path` (an "
                       "EDM checkpoint, e.g. from idiff edm-train)");
         return make_consistency_objective(karras_params(c.config), c.train, target_network(c),
                                           c.teacher, c.teacher_denoiser, c.teacher_net);
       }},
      {"consistency_training",
       "consistency_models' consistency training: as distillation, with the Euler step of x_0 "
       "itself in place of a teacher",
       [](const ObjectiveContext& c) {
         IDIFF_REQUIRE(!c.teacher, ConfigError,
                       "`teacher_model_path` is for consistency_distillation; "
                       "`training_mode` consistency_training has no teacher");
         return make_consistency_objective(karras_params(c.config), c.train, target_network(c),
                                           nullptr);
       }},
      {"progdist",
       "consistency_models' progressive distillation: the model learns in one Euler step what "
       "its teacher takes in two, the steps halving every --distill_steps_per_iter "
       "(--scale_mode progdist; Salimans & Ho 2022)",
       [](const ObjectiveContext& c) {
         IDIFF_REQUIRE(!!c.teacher, ConfigError,
                       "`training_mode` progdist needs `teacher_model_path` (the checkpoint "
                       "whose sampling it shortens)");
         return make_progdist_objective(karras_params(c.config), c.train, target_network(c),
                                        c.teacher, c.teacher_denoiser, c.teacher_net);
       }},
  };
  return rows;
}

std::string objective_names() {
  std::vector<std::string> names;
  for (const ObjectiveRow& row : objective_registry()) names.push_back(row.name);
  return join(names, ", ");
}

const ObjectiveRow& find_objective(const std::string& name) {
  for (const ObjectiveRow& row : objective_registry()) {
    if (name == row.name) return row;
  }
  throw ConfigError(str("`training_mode`: unknown objective '", name, "' (expected one of ",
                        objective_names(), ")"));
}

}  // namespace idiff
