#include "idiff/drivers/classifier_train.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/logger.h"
#include "idiff/common/rng.h"
#include "idiff/data/load_data.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/inspect/summary.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/adamw.h"
#include "idiff/train/optimizer_file.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace idiff {
namespace {

void check_config(const ClassifierTrainConfig& c) {
  IDIFF_REQUIRE(!c.data_dir.empty(), ConfigError, "`data_dir` is required (labelled images)");
  IDIFF_REQUIRE(c.iterations >= 1, ConfigError, "`iterations` must be at least 1, got ",
                c.iterations);
  IDIFF_REQUIRE(c.batch_size >= 1, ConfigError, "`batch_size` must be at least 1, got ",
                c.batch_size);
  IDIFF_REQUIRE(c.microbatch == -1 || c.microbatch >= 1, ConfigError,
                "`microbatch` must be positive or -1, got ", c.microbatch);
  for (const auto& [name, v] : {std::pair{"`log_interval`", c.log_interval},
                                {"`eval_interval`", c.eval_interval},
                                {"`save_interval`", c.save_interval}}) {
    IDIFF_REQUIRE(v >= 1, ConfigError, name, " must be at least 1, got ", v);
  }
}

std::unique_ptr<DataLoader> labelled_loader(const ClassifierTrainJob& job, const std::string& dir,
                                            int64_t start_batch, uint64_t seed) {
  DataConfig dc;
  dc.data_dir = dir;
  dc.batch_size = job.train.batch_size;
  dc.image_size = job.model.image_size;
  dc.image_channels = job.model.image_channels;
  dc.class_cond = true;
  dc.num_workers = job.train.num_workers;
  dc.max_image_pixels = job.train.max_image_pixels;
  dc.seed = seed;
  dc.start_batch = start_batch;
  if (job.stop) dc.interrupted = [stop = job.stop] { return !stop().empty(); };
  std::unique_ptr<DataLoader> loader = load_data(dc);
  IDIFF_REQUIRE(loader->dataset().has_labels(), ConfigError, "the classifier needs labels, but ",
                dir, " has none (image folders label by file-name prefix, e.g. cat_01.png)");
  return loader;
}

// The classifier's outputs: the resumed file's, else the training data's classes; every
// label of the data (and of the validation data) must be one of them.
int64_t classifier_classes(const TensorMap& resumed, const std::string& path,
                           const DataLoader& data, const DataLoader* val) {
  int64_t classes = data.dataset().num_classes();
  if (!resumed.empty()) {
    const InferredClassifier inferred = infer_classifier_config(resumed);
    IDIFF_REQUIRE(inferred.is_classifier && inferred.num_classes > 0, FileError, path,
                  ": not a classifier (no EncoderUNetModel head)");
    IDIFF_REQUIRE(classes <= inferred.num_classes, ConfigError, "the data has ", classes,
                  " classes; the classifier resumed from ", path, " has ", inferred.num_classes);
    classes = inferred.num_classes;
  }
  IDIFF_REQUIRE(!val || val->dataset().num_classes() <= classes, ConfigError,
                "the validation data has ", val ? val->dataset().num_classes() : 0,
                " classes; the classifier has ", classes);
  return classes;
}

// A seed per step (and per use), so that a resumed run draws what a straight one would.
uint64_t step_seed(uint64_t seed, int64_t step, uint64_t use) {
  return seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(step) * 0xbf58476d1ce4e5b9ull + use;
}

class ClassifierTrainer {
 public:
  ClassifierTrainer(const ClassifierTrainJob& job, Logger& logger, c10::Device device)
      : job_(job),
        logger_(logger),
        device_(device),
        diffusion_(create_gaussian_diffusion(job.diffusion)),
        sampler_(create_named_schedule_sampler(job.train.schedule_sampler, diffusion_)) {}

  // guided-diffusion's forward_backward_log: one batch, cross-entropy per microbatch, the
  // loss and top-1/top-5 accuracy logged (with the loss by timestep quartile); gradients
  // only when training.
  void forward_backward_log(EncoderUNetModel& model, DataLoader& data, const std::string& prefix,
                            bool train) {
    const Batch batch = data.next();
    at::Tensor x = batch.images.to(device_);
    const at::Tensor labels = batch.labels.to(device_, at::kLong);
    const int64_t n = x.size(0);
    at::Tensor t;
    if (job_.train.noised) {
      t = std::get<0>(sampler_->sample(n, device_));
      x = diffusion_.q_sample(x, t);
    } else {
      t = at::zeros({n}, at::TensorOptions(at::kLong).device(device_));
    }
    // The timesteps as the sampling loop will give them to the classifier.
    const at::Tensor t_model = diffusion_.model_timesteps(t);
    const int64_t micro = job_.train.microbatch > 0 ? job_.train.microbatch : n;
    for (int64_t i = 0; i < n; i += micro) {
      const int64_t len = std::min(micro, n - i);
      const at::Tensor logits = model->forward(x.narrow(0, i, len), t_model.narrow(0, i, len));
      const at::Tensor y = labels.narrow(0, i, len);
      const at::Tensor loss = at::cross_entropy_loss(logits, y, {}, at::Reduction::None);
      log_losses(prefix, t.narrow(0, i, len), loss.detach());
      const at::Tensor top5 =
          std::get<1>(logits.detach().topk(std::min<int64_t>(5, logits.size(1))));
      const at::Tensor hits = top5 == y.unsqueeze(1);
      logger_.logkv_mean(prefix + "_acc@1",
                         hits.select(1, 0).to(at::kDouble).mean().item<double>());
      logger_.logkv_mean(prefix + "_acc@5", hits.any(1).to(at::kDouble).mean().item<double>());
      if (train) (loss.mean() * (static_cast<double>(len) / n)).backward();
    }
  }

 private:
  void log_losses(const std::string& prefix, const at::Tensor& t, const at::Tensor& loss) {
    const at::Tensor l = loss.to(at::kCPU, at::kDouble), ts = t.to(at::kCPU);
    logger_.logkv_mean(prefix + "_loss", l.mean().item<double>());
    const int64_t T = diffusion_.num_timesteps();
    for (int64_t j = 0; j < l.size(0); ++j) {
      const int64_t q = std::clamp<int64_t>(4 * ts[j].item<int64_t>() / T, 0, 3);
      logger_.logkv_mean(str(prefix, "_loss_q", q), l[j].item<double>());
    }
  }

  const ClassifierTrainJob& job_;
  Logger& logger_;
  c10::Device device_;
  SpacedDiffusion diffusion_;
  std::unique_ptr<ScheduleSampler> sampler_;
};

}  // namespace

ClassifierTrainResult run_classifier_training(const ClassifierTrainJob& job) {
  const ClassifierTrainConfig& c = job.train;
  check_config(c);
  const c10::Device device = resolve_device(c.device);
  Logger logger(Logger::choose_dir(c.log_dir));
  logger.log("Logging to " + logger.dir());
  logger.log("device: " + describe_device(device));
  logger.log("diffusion: " + describe_defaults(job.diffusion));

  int64_t step = 0;
  TensorMap resumed;
  if (!c.resume_checkpoint.empty()) {
    step = parse_resume_step_from_filename(c.resume_checkpoint);
    resumed = load_tensor_file(c.resume_checkpoint);
  }
  logger.log("creating data loader...");
  std::unique_ptr<DataLoader> data = labelled_loader(job, c.data_dir, step, c.seed);
  std::unique_ptr<DataLoader> val;
  if (!c.val_data_dir.empty()) val = labelled_loader(job, c.val_data_dir, 0, c.seed + 1);
  // As many outputs as the data has classes (a resumed classifier keeps its own, e.g.
  // guided-diffusion's 1000 fine-tuned on fewer).
  const int64_t classes = classifier_classes(resumed, c.resume_checkpoint, *data, val.get());
  logger.log(
      str("classes: ", classes, resumed.empty() ? " (the data's)" : " (the resumed classifier's)"));

  logger.log("creating model and diffusion...");
  EncoderUNetModel model{nullptr};
  {
    ScopedSeed seed(c.seed, device);  // the initial weights
    model =
        create_classifier(job.classifier, job.model.image_size, job.model.image_channels, classes);
  }
  if (!c.resume_checkpoint.empty()) {
    logger.continue_progress(step);
    logger.log(
        str("loading model from checkpoint: ", c.resume_checkpoint, "... at ", step, " step"));
    load_state_dict(*model, resumed, c.resume_checkpoint);
  }
  model->to(device);
  model->train();
  logger.log(str("parameters: ", with_commas(parameter_count(*model))));
  if (job.classifier.classifier_use_fp16) {
    logger.log(
        "classifier_use_fp16: training runs in float32 here (the files are float32 "
        "either way; sampling converts the torso)");
  }
  ClassifierTrainer trainer(job, logger, device);

  logger.log("creating optimizer...");
  AdamWOptions ao;
  ao.lr = c.lr;
  ao.weight_decay = c.weight_decay;
  AdamW opt(model->parameters(), ao);
  if (!c.resume_checkpoint.empty()) {
    const std::string path =
        parent_dir(c.resume_checkpoint) + "/" + step_checkpoint_name("opt", step);
    if (path_exists(path)) {
      logger.log("loading optimizer state from checkpoint: " + path);
      std::vector<std::vector<int64_t>> shapes;
      for (const auto& p : model->parameters()) shapes.push_back(p.sizes().vec());
      load_optimizer_file(path, opt, shapes);
    } else {
      logger.warn("no optimizer checkpoint " + path + ": AdamW moments restart from zero");
    }
  }

  ClassifierTrainResult result;
  result.log_dir = logger.dir();
  int64_t saved = -1;
  auto save = [&] {
    const std::vector<at::Tensor> params = model->parameters();
    IDIFF_REQUIRE(
        std::all_of(params.begin(), params.end(),
                    [](const at::Tensor& p) { return at::isfinite(p).all().item<bool>(); }),
        Error, "the classifier's weights became non-finite by step ", step,
        "; not saving them (try a lower `lr`)");
    const std::string path = logger.dir() + "/" + step_checkpoint_name("model", step);
    logger.log("saving model " + path + "...");
    TensorMap sd;
    for (const auto& item : model->named_parameters())
      sd.insert(item.key(), item.value().detach().to(at::kCPU, at::kFloat).contiguous());
    save_tensor_file(path, sd);
    save_optimizer_file(logger.dir() + "/" + step_checkpoint_name("opt", step), opt);
    saved = step;
  };

  logger.log("training classifier model...");
  std::string stopped;
  while (step < c.iterations) {
    if (c.anneal_lr) opt.set_lr(c.lr * (1.0 - static_cast<double>(step) / c.iterations));
    {
      ScopedSeed seed(step_seed(c.seed, step, 0), device);  // timesteps and noise
      opt.zero_grad();
      trainer.forward_backward_log(model, *data, "train", true);
      opt.step();
    }
    if (val && step % c.eval_interval == 0) {
      ScopedSeed seed(step_seed(c.seed, step, 1), device);
      torch::NoGradGuard no_grad;
      model->eval();
      trainer.forward_backward_log(model, *val, "val", false);
      model->train();
    }
    ++step;
    if ((step - 1) % c.log_interval == 0 || step == c.iterations) {
      logger.logkv_int("step", step);
      logger.logkv_int("samples", step * c.batch_size);
      result.last_logged = logger.dumpkvs();
    }
    if (step % c.save_interval == 0) save();
    if (job.stop) stopped = job.stop();
    if (!stopped.empty()) break;
  }
  if (saved != step) save();
  if (!stopped.empty()) logger.log(str("stopped by ", stopped, " after step ", step));
  result.step = step;
  return result;
}

}  // namespace idiff
