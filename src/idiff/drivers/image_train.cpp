#include "idiff/drivers/image_train.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/rng.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/solver.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/distributed/rank_agreement.h"
#include "idiff/drivers/guided_models.h"
#include "idiff/drivers/load_model.h"
#include "idiff/drivers/ranks.h"
#include "idiff/drivers/super_res.h"
#include "idiff/io/atomic_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/summary.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <set>

namespace idiff {

namespace {

// The flags whose values every rank must share: those that shape the model, the
// diffusion and the collectives of a step (batch, logging, saving and stopping).
RankSettings train_settings(const TrainJob& job) {
  const TrainConfig& t = job.train;
  const auto n = [](auto v) { return str(v); };
  RankSettings out = model_and_diffusion_settings(job.model, job.diffusion);
  const RankSettings train = {
      {"`training_mode`", job.diffusion.training_mode},
      {"`schedule_sampler`", t.schedule_sampler},
      {"`lr`", n(t.lr)},
      {"`optimizer`", t.optimizer},
      {"`lr_anneal_steps`", n(t.lr_anneal_steps)},
      {"`batch_size`", n(t.batch_size)},
      {"`microbatch`", n(t.microbatch)},
      {"`ema_rate`", t.ema_rate},
      {"`log_interval`", n(t.log_interval)},
      {"`save_interval`", n(t.save_interval)},
      {"`resume_checkpoint` (its step)",
       n(t.resume_checkpoint.empty() ? 0 : parse_resume_step_from_filename(t.resume_checkpoint))},
      {"`use_fp16`", t.use_fp16 ? "True" : "False"},
      {"`precision`", t.precision},
      {"`max_steps`", n(t.max_steps)},
      {"`teacher_model_path` (given)", t.teacher_model_path.empty() ? "no" : "yes"},
      {"`guidance_scale`", str(t.guidance_scale)},
      {"`target_ema_mode`, `scale_mode`", t.target_ema_mode + ", " + t.scale_mode},
      {"`start_ema`, `start_scales`, `end_scales`",
       str(t.start_ema, ", ", t.start_scales, ", ", t.end_scales)},
      {"`total_training_steps`, `distill_steps_per_iter`",
       str(t.total_training_steps, ", ", t.distill_steps_per_iter)},
      {"`loss_norm`, `lpips_vgg16`, `lpips_weights`",
       t.loss_norm + ", " + t.lpips_vgg16 + ", " + t.lpips_weights}};
  out.insert(out.end(), train.begin(), train.end());
  return out;
}

// consistency distillation's teacher (scripts/cm_train.py): the EDM network of the model's
// flags with --teacher_dropout, from --teacher_model_path. Its flags.json, when it has one,
// must describe the model being trained (the weights alone do not tell the image size).
UNetModel load_edm_teacher(const TrainJob& job, const ModelConfig& model, Logger& logger) {
  const std::string& path = job.train.teacher_model_path;
  std::string source;
  const auto flags = read_model_flags(path, &source);
  const std::set<std::string> own = {"training_mode", "weight_schedule", "dropout",
                                     "use_checkpoint", "timestep_respacing"};
  for (const auto& [name, student] : model_and_diffusion_settings(job.model, job.diffusion)) {
    const std::string flag = name.substr(1, name.size() - 2);
    if (own.count(flag) > 0) continue;
    for (const auto& [teacher_flag, teacher] : flags) {
      IDIFF_REQUIRE(teacher_flag != flag || teacher == student, ConfigError,
                    "`teacher_model_path` ", path, " was trained with --", flag, " ", teacher, " (",
                    source, "), the model to train has --", flag, " ", student,
                    "; give the teacher's model flags");
    }
  }
  if (flags.empty())
    logger.log("no " + source + ": the teacher is taken to have the model's flags");
  ModelConfig m = model;
  m.dropout = job.train.teacher_dropout;
  logger.log("loading the EDM teacher " + path + "...");
  return load_model(m, false, path, c10::kCPU, /*karras=*/true);
}

bool vp_teacher(const TrainJob& job) {
  return job.teacher_flags && !is_karras(job.teacher_diffusion);
}

// An improved-/guided-diffusion teacher's noise levels, as sigma = sqrt((1 - a) / a) of its
// alphas_cumprod a (the range the student may be distilled over).
NoiseSchedule teacher_schedule(const TrainJob& job) {
  return noise_schedule_of(diffusion_params(job.teacher_diffusion));
}

// The diffusion the student is trained with: with an improved-/guided-diffusion teacher its
// sigma range clipped to the teacher's.
DiffusionConfig student_diffusion(const TrainJob& job) {
  DiffusionConfig d = job.diffusion;
  if (!vp_teacher(job)) return d;
  const NoiseSchedule ns = teacher_schedule(job);
  d.sigma_min = std::max(d.sigma_min, ns.level(0).sigma_k());
  d.sigma_max =
      std::min(d.sigma_max, ns.level(static_cast<double>(ns.num_timesteps() - 1)).sigma_k());
  return d;
}

struct Teacher {
  UNetModel model{nullptr};
  TeacherDenoiser denoiser;  // empty: an EDM network
  TeacherNet net;            // empty: called plainly
};

// --guidance_scale: the teacher called classifier-free guided (the guided teacher's ODE, as
// guided distillation takes it); the student sees the labels it was guided towards.
void guide_teacher(const TrainJob& job, Teacher& t, Logger& logger) {
  const double s = job.train.guidance_scale;
  if (s == 1.0) return;
  const UNetOptions& o = t.model->options();
  IDIFF_REQUIRE(o.num_classes > 0 && o.null_label, ConfigError, "`guidance_scale` ", s, ": ",
                job.train.teacher_model_path,
                " is not a class-conditional model trained with a null label (`class_cond` "
                "True, `class_dropout_prob` > 0)");
  IDIFF_REQUIRE(job.model.class_cond, ConfigError, "`guidance_scale` ", s,
                ": the student learns the teacher's guided ODE for each class, so it is "
                "class-conditional too: give `class_cond` True");
  t.net = [model = t.model, s](const ModelKwargs& kwargs) {
    return classifier_free_model_fn(model, kwargs, s);
  };
  logger.log(str("the teacher is classifier-free guided at scale ", s));
}

// consistency distillation's teacher: an EDM network (the reference's), or an improved-/
// guided-diffusion one as a denoiser of sigma levels, its x_0 clipped as the reference
// samples; none for other modes.
Teacher load_teacher(const TrainJob& job, const ModelConfig& model, const DiffusionConfig& student,
                     Logger& logger) {
  const std::string& path = job.train.teacher_model_path;
  if (path.empty()) return {};
  if (!vp_teacher(job)) {
    Teacher t{load_edm_teacher(job, model, logger), {}, {}};
    guide_teacher(job, t, logger);
    return t;
  }
  logger.log("loading the improved-/guided-diffusion teacher " + path + "...");
  Teacher t;
  t.model = load_model(job.teacher_model, false, path, c10::kCPU);
  const DiffusionParams p = diffusion_params(job.teacher_diffusion);
  const bool x0 = p.model_mean_type == ModelMeanType::StartX;
  const bool learned =
      p.model_var_type == ModelVarType::Learned || p.model_var_type == ModelVarType::LearnedRange;
  t.denoiser = [ns = teacher_schedule(job), x0, learned](const ModelFn& net) {
    return vp_denoiser(net, ns, x0, learned, /*clip=*/true);
  };
  logger.log(str("the teacher's x_0 clipped to [-1, 1]; noise levels sigma ", student.sigma_min,
                 "..", student.sigma_max,
                 " (the teacher's range); the model starts from fresh "
                 "weights (the teacher's network predicts noise at other input scalings and "
                 "times)"));
  guide_teacher(job, t, logger);
  return t;
}

// The settings of the run: consistency models and progressive distillation train for
// --total_training_steps (the end of their schedules) unless --max_steps says otherwise.
TrainConfig run_settings(const TrainJob& job) {
  TrainConfig t = job.train;
  const std::string& mode = job.diffusion.training_mode;
  const bool distills = mode == "consistency_distillation" || mode == "progdist";
  IDIFF_REQUIRE(t.teacher_model_path.empty() || distills, ConfigError,
                "`teacher_model_path` is for `training_mode` consistency_distillation or "
                "progdist, not ",
                mode);
  if ((distills || is_consistency(mode)) && t.max_steps == 0 && t.lr_anneal_steps == 0)
    t.max_steps = t.total_training_steps;
  return t;
}

}  // namespace

StopReason run_training(const TrainJob& job) {
  const TrainConfig tc = run_settings(job);
  const DiffusionConfig student = student_diffusion(job);
  IDIFF_REQUIRE(
      !tc.data_dir.empty(), ConfigError,
      "`data_dir` is required (an image folder, a folder of IDX files, or fashion-mnist)");
  // One process alone, or one rank of a run its launcher describes (dist_context.h).
  const c10::Device device = DistContext::device_for_local_rank(tc.device);
  const std::unique_ptr<DistContext> dist = DistContext::from_environment(device, tc.dist_timeout);

  // Only rank 0 writes logs and checkpoints; the others keep quiet and write no files.
  Logger logger(dist->is_main() ? Logger::choose_dir(tc.log_dir) : "", !dist->is_main());
  logger.log("Logging to " + logger.dir());
  // A resumed run continues the folder's progress.csv (its rows before the checkpoint).
  if (!tc.resume_checkpoint.empty())
    logger.continue_progress(parse_resume_step_from_filename(tc.resume_checkpoint));
  if (dist->is_main()) {
    // The logger holds the folder's lock: temporaries of our names are an earlier run's.
    const int64_t stale =
        remove_stale_temporaries(logger.dir(), {"model", "ema_", "opt", "target_model"});
    if (stale > 0)
      logger.log(str("removed ", stale, " temporary files left by an interrupted run"));
  }
  logger.log("device: " + describe_device(device));
  if (dist->is_distributed()) {
    logger.log(str("distributed: ", dist->describe(), "; global batch ",
                   tc.batch_size * dist->world_size(), " (--batch_size ", tc.batch_size,
                   " per rank)"));
  }

  logger.log("creating model and diffusion...");
  logger.log("diffusion: " + describe_defaults(student));
  UNetModel model{nullptr};
  const ModelConfig m = family_model_config(job.model, student);
  {
    ScopedSeed seed(tc.seed, c10::kCPU);  // the initial weights (rank 0's reach every rank)
    model = job.super_res ? sr_create_model(m) : create_model(m);
  }
  const GaussianDiffusion diffusion = create_gaussian_diffusion(student);
  logger.log(str("model parameters: ", with_commas(parameter_count(*model))));
  const Teacher teacher = load_teacher(job, m, student, logger);
  if (teacher.model && !vp_teacher(job)) {
    // The reference starts the student from its EDM teacher's weights.
    load_state_dict(*model, state_dict(*teacher.model), tc.teacher_model_path);
    logger.log("the model starts from the teacher's weights");
  }
  std::unique_ptr<TrainingObjective> objective =
      find_objective(student.training_mode)
          .make(ObjectiveContext{diffusion, tc, student, m, teacher.model, teacher.denoiser,
                                 teacher.net});
  logger.log("objective: " + objective->name());
  logger.log("optimizer: " + tc.optimizer +
             (tc.optimizer == "radam" ? " (consistency_models' torch.optim.RAdam)"
                                      : " (improved-diffusion's torch.optim.AdamW)"));

  // Before the first collective (TrainLoop broadcasts the weights): the ranks agree.
  RankSettings settings = train_settings(job);
  std::vector<at::Tensor> params;
  for (const auto& p : model->parameters()) params.push_back(p);
  for (auto& s : shape_settings(params)) settings.push_back(std::move(s));
  check_ranks_agree(*dist, settings);

  logger.log("creating data loader...");
  DataConfig dc;
  dc.data_dir = tc.data_dir;
  dc.batch_size = tc.batch_size;
  dc.image_size = job.super_res ? job.model.large_size : job.model.image_size;
  dc.class_cond = job.model.class_cond;
  dc.skip_bad_images = tc.skip_bad_images;
  dc.num_workers = tc.num_workers;
  dc.max_image_pixels = tc.max_image_pixels;
  dc.image_channels = job.model.image_channels;
  if (job.stop) dc.interrupted = [stop = job.stop] { return !stop().empty(); };
  dc.seed = tc.seed;
  dc.rank = dist->rank();
  dc.world_size = dist->world_size();
  dc.start_batch =
      tc.resume_checkpoint.empty() ? 0 : parse_resume_step_from_filename(tc.resume_checkpoint);
  std::shared_ptr<DataLoader> loader = load_data(dc);
  logger.log(loader->dataset().summary());
  if (job.model.class_cond) {
    IDIFF_REQUIRE(loader->dataset().has_labels(), ConfigError,
                  "`class_cond` True needs labels, but ", tc.data_dir, " has none");
    IDIFF_REQUIRE(loader->dataset().num_classes() <= kNumClasses, ConfigError, tc.data_dir, " has ",
                  loader->dataset().num_classes(), " classes; class-conditional models have ",
                  kNumClasses);
  }
  // The flags every checkpoint of this folder was trained with (and the classes' names):
  // `idiff sample` takes them.
  if (dist->is_main()) {
    write_model_flags(
        logger.dir(), job.model, student,
        job.model.class_cond ? loader->dataset().class_names() : std::vector<std::string>());
  }

  const int64_t small = job.model.small_size;
  const bool super_res = job.super_res;
  const double drop = job.model.class_dropout_prob;
  const uint64_t drop_seed = rank_seed(tc.seed ^ 0x5ca1ab1eull, dist->rank());
  BatchFn data = [loader, super_res, small, drop, drop_seed](int64_t step) {
    Batch b = loader->next();
    TrainBatch out;
    out.images = b.images;
    out.kwargs.y = b.labels;
    if (drop > 0 && b.labels.defined())
      out.kwargs.y = drop_class_labels(b.labels, drop, drop_seed, step);
    if (super_res) out.kwargs.low_res = low_res_copy(b.images, small);
    return out;
  };

  logger.log("training...");
  TrainLoop loop(model, std::move(objective), data, tc, logger, device, dist.get());
  loop.set_stop_check(job.stop);
  const StopReason reason = loop.run_loop();
  switch (reason) {
    case StopReason::Signal:
      logger.log(str("stopped by ",
                     job.stop && !job.stop().empty() ? job.stop() : "another rank's stop request",
                     " after step ", loop.step(), "; saved to ", logger.dir()));
      break;
    case StopReason::MaxMinutes:
      logger.log(
          str("--max_minutes reached after step ", loop.step(), "; saved to ", logger.dir()));
      break;
    default:
      logger.log(str("training finished at step ", loop.step(), "; saved to ", logger.dir()));
  }
  const int64_t skipped =
      dist->all_reduce_sum(at::full({1}, loader->skipped_images(), at::kLong)).item<int64_t>();
  if (skipped > 0) logger.warn(str(skipped, " unreadable images were skipped"));
  return reason;
}

at::Tensor drop_class_labels(const at::Tensor& labels, double p, uint64_t seed, int64_t step) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(
      seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(step + 1));
  const at::Tensor dropped = at::rand({labels.size(0)}, gen) < p;
  return at::where(dropped, at::full_like(labels, kNumClasses), labels);
}

}  // namespace idiff
