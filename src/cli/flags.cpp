#include "flags.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/sampling/sampler_registry.h"
#include "idiff/drivers/load_model.h"
#include "idiff/train/training_objective.h"

#include <cmath>
#include <cstdint>
#include <iostream>
#include <stdexcept>

namespace idiff::cli {
namespace {

std::string bool_str(bool b) {
  return b ? "True" : "False";
}

CLI::Option* last_wins(CLI::Option* o) {
  return o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// A bad value is a flag error like CLI11's own: main() prints it with the --help hint and
// exits 2.
template <typename Parse>
auto as_flag_error(Parse parse) {
  return [parse](const std::string& v) {
    try {
      parse(v);
    } catch (const ConfigError& e) {
      throw CLI::ValidationError(e.what());
    }
  };
}

}  // namespace

// Every flag takes the last of repeated values, as argparse does (flag blocks pasted one
// after another may repeat a flag).
// Numbers are parsed here rather than by CLI11, whose conversion clamps values beyond
// int64 and takes "inf" and "nan" as numbers.
CLI::Option* Flags::add(const std::string& name, int64_t& field, IntRange range,
                        const std::string& help) {
  const std::string flag = "--" + name;
  return last_wins(app_.add_option_function<std::string>(
                           flag, as_flag_error([&field, flag, range](const std::string& v) {
                             field = parse_int(v, flag, range.min, range.max);
                           }),
                           help)
                       ->default_str(std::to_string(field))
                       ->type_name(str("INT in [", range.min, ", ", range.max, "]")));
}

CLI::Option* Flags::add(const std::string& name, uint64_t& field, const std::string& help) {
  const std::string flag = "--" + name;
  return last_wins(app_.add_option_function<std::string>(
                           flag, as_flag_error([&field, flag](const std::string& v) {
                             field = parse_uint64(v, flag);
                           }),
                           help)
                       ->default_str(std::to_string(field))
                       ->type_name("UINT"));
}

CLI::Option* Flags::add(const std::string& name, double& field, RealRange range,
                        const std::string& help) {
  const std::string flag = "--" + name;
  return last_wins(app_.add_option_function<std::string>(
                           flag, as_flag_error([&field, flag, range](const std::string& v) {
                             field = parse_double(v, flag, range.min, range.max);
                           }),
                           help)
                       ->default_str(str(field))
                       ->type_name(std::isinf(range.max)
                                       ? str("FLOAT >= ", range.min)
                                       : str("FLOAT in [", range.min, ", ", range.max, "]")));
}

CLI::Option* Flags::add(const std::string& name, std::string& field, const std::string& help) {
  return last_wins(
      app_.add_option("--" + name, field, help)->capture_default_str()->type_name("TEXT"));
}

CLI::Option* Flags::add(const std::string& name, bool& field, const std::string& help) {
  const std::string flag = "--" + name;
  return last_wins(app_.add_option_function<std::string>(
                           flag, as_flag_error([&field, flag](const std::string& v) {
                             field = parse_bool(v, flag);
                           }),
                           help)
                       ->default_str(bool_str(field))
                       ->type_name("BOOL"));
}

CLI::Option* Flags::add(const std::string& name, bool& field, bool& mirror,
                        const std::string& help) {
  const std::string flag = "--" + name;
  return last_wins(app_.add_option_function<std::string>(
                           flag, as_flag_error([&field, &mirror, flag](const std::string& v) {
                             field = mirror = parse_bool(v, flag);
                           }),
                           help)
                       ->default_str(bool_str(field))
                       ->type_name("BOOL"));
}

void add_model_and_diffusion_flags(CLI::App& app, ModelConfig& m, DiffusionConfig& d,
                                   bool super_res) {
  Flags f(app);
  d.learn_sigma = m.learn_sigma;
  const std::string group = "Model";
  if (super_res) {
    f.add("large_size", m.large_size, kImageSideRange,
          "output image size of the upsampler (64 or 256)")
        ->group(group);
    f.add("small_size", m.small_size, kImageSideRange, "input (low-resolution) image size")
        ->group(group);
  } else {
    f.add("image_size", m.image_size, kImageSideRange, "image side in pixels (32, 64 or 256)")
        ->group(group);
  }
  f.add("image_channels", m.image_channels, {1, 3},
        "image channels: 3 (RGB, the reference's) or 1 (grey; the data is converted)")
      ->group(group);
  f.add("num_channels", m.num_channels, {1, 16384}, "base channel count of the UNet")->group(group);
  f.add("num_res_blocks", m.num_res_blocks, {1, 100}, "residual blocks per resolution")
      ->group(group);
  f.add("num_heads", m.num_heads, {1, 1024}, "attention heads")->group(group);
  f.add("num_heads_upsample", m.num_heads_upsample, {-1, 1024},
        "attention heads on the up path (-1: num_heads)")
      ->group(group);
  f.add("attention_resolutions", m.attention_resolutions, "resolutions with attention, e.g. 16,8")
      ->group(group);
  f.add("dropout", m.dropout, {0.0, 0.999999}, "dropout rate in residual blocks")->group(group);
  f.add("learn_sigma", m.learn_sigma, d.learn_sigma, "learn the variance (6 output channels)")
      ->group(group);
  f.add("class_cond", m.class_cond, "class-conditional model (1000 classes)")->group(group);
  f.add("use_checkpoint", m.use_checkpoint, "gradient checkpointing (less memory, more time)")
      ->group(group);
  f.add("use_scale_shift_norm", m.use_scale_shift_norm, "FiLM-style scale-shift norm")
      ->group(group);
  const std::string adm = "Model (guided-diffusion)";
  f.add("num_head_channels", m.num_head_channels, {-1, 16384},
        "channels per attention head (-1: use num_heads)")
      ->group(adm);
  f.add("channel_mult", m.channel_mult, "channel multiplier per level, e.g. 1,2,2 (empty: by size)")
      ->group(adm);
  f.add("resblock_updown", m.resblock_updown, "ResBlocks up/downsample between levels")->group(adm);
  f.add("use_new_attention_order", m.use_new_attention_order,
        "split q, k and v before the heads (QKVAttention)")
      ->group(adm);
  f.add("class_dropout_prob", m.class_dropout_prob, {0.0, 0.999999},
        "classifier-free guidance: a null label, given to this share of the training images")
      ->group("Model (idiff additions)");
  add_diffusion_flags(app, d, super_res, &m);
}

namespace {

// consistency_models' flags (cm/script_util.py): the family (--training_mode) and the
// Karras denoiser's settings. `idiff sample` has its own --sigma_max (the sampler's).
void add_karras_flags(CLI::App& app, DiffusionConfig& d) {
  Flags f(app);
  const std::string g = "Karras denoiser (consistency_models)";
  f.add("training_mode", d.training_mode,
        "the model family and objective: improved_diffusion (improved- and guided-diffusion), "
        "edm, consistency_distillation, consistency_training or progdist (consistency_models')")
      ->group(g);
  f.add("sigma_min", d.sigma_min, {0.0, kNoMax}, "the lowest noise level sigma")->group(g);
  if (app.get_option_no_throw("--sigma_max") == nullptr) {
    f.add("sigma_max", d.sigma_max, {0.0, kNoMax}, "the highest noise level sigma")->group(g);
  }
  f.add("sigma_data", d.sigma_data, {0.0, kNoMax}, "the data's standard deviation (scalings)")
      ->group(g);
  f.add("weight_schedule", d.weight_schedule,
        std::string("loss weights by noise level: ") + weight_schedule_names())
      ->group(g);
}

// --defaults consistency-models: cm/script_util.py's model defaults where guided-diffusion's
// differ, and the EDM family; flags given explicitly win.
void apply_consistency_models_defaults(CLI::App& app, DiffusionConfig& d, ModelConfig* m) {
  const auto given = [&app](const char* flag) {
    const CLI::Option* o = app.get_option_no_throw(flag);
    return o != nullptr && o->count() > 0;
  };
  // The family's default model is EDM (a command may have chosen another Karras mode).
  if (!given("--training_mode") && d.training_mode == "improved_diffusion") d.training_mode = "edm";
  if (m == nullptr) return;
  if (!given("--attention_resolutions")) m->attention_resolutions = "32,16,8";
  if (!given("--num_head_channels")) m->num_head_channels = 64;
}

}  // namespace

void add_diffusion_flags(CLI::App& app, DiffusionConfig& d, bool super_res, ModelConfig* model) {
  add_karras_flags(app, d);
  Flags f(app);
  const std::string dgroup = "Diffusion";
  if (!super_res) {
    f.add("sigma_small", d.sigma_small, "fixed small variance (else fixed large)")->group(dgroup);
  }
  f.add("diffusion_steps", d.diffusion_steps, {1, 100000}, "number of diffusion steps T")
      ->group(dgroup);
  f.add("noise_schedule", d.noise_schedule, "beta schedule: linear or cosine")->group(dgroup);
  f.add("timestep_respacing", d.timestep_respacing, "respacing, e.g. 250, 10,15,20 or ddim50")
      ->group(dgroup);
  f.add("use_kl", d.use_kl, "train on the variational bound")->group(dgroup);
  f.add("predict_xstart", d.predict_xstart, "the model predicts x_0 instead of the noise")
      ->group(dgroup);
  CLI::Option* rescale_t =
      f.add("rescale_timesteps", d.rescale_timesteps, "feed the model t scaled to [0, 1000)")
          ->group(dgroup);
  CLI::Option* rescale_s =
      f.add("rescale_learned_sigmas", d.rescale_learned_sigmas, "hybrid loss (rescaled MSE + VLB)")
          ->group(dgroup);
  f.add("defaults", d.defaults,
        "improved-diffusion (rescale_timesteps and rescale_learned_sigmas True), "
        "guided-diffusion (both False, for its checkpoints) or consistency-models (its model "
        "defaults, --training_mode edm); explicit flags win")
      ->group(dgroup);
  // After parsing, so that --defaults may come anywhere and explicit flags win.
  app.parse_complete_callback([&app, &d, model, rescale_t, rescale_s] {
    IDIFF_REQUIRE(d.defaults == "improved-diffusion" || d.defaults == "guided-diffusion" ||
                      d.defaults == "consistency-models",
                  ConfigError,
                  "`defaults` must be improved-diffusion, guided-diffusion or consistency-models, "
                  "got '",
                  d.defaults, "'");
    if (d.defaults == "guided-diffusion") {
      if (rescale_t->count() == 0) d.rescale_timesteps = false;
      if (rescale_s->count() == 0) d.rescale_learned_sigmas = false;
    }
    if (d.defaults == "consistency-models") apply_consistency_models_defaults(app, d, model);
  });
}

void add_train_flags(CLI::App& app, TrainConfig& t) {
  Flags f(app);
  const std::string g = "Training";
  f.add("data_dir", t.data_dir, "image folder, IDX folder/file, or fashion-mnist")->group(g);
  f.add("schedule_sampler", t.schedule_sampler, "timestep sampler: uniform or loss-second-moment")
      ->group(g);
  f.add("lr", t.lr, {0.0, kNoMax}, "AdamW learning rate")->group(g);
  f.add("weight_decay", t.weight_decay, {0.0, kNoMax},
        "weight decay (AdamW's decoupled; RAdam's added to the gradient, as PyTorch's)")
      ->group(g);
  f.add("optimizer", t.optimizer,
        "adamw (improved-/guided-diffusion's) or radam (consistency_models': edm-train's and "
        "cm-train's default)")
      ->group(g);
  f.add("lr_anneal_steps", t.lr_anneal_steps, kStepRange,
        "anneal lr linearly to 0 over this many steps, then stop (0: never)")
      ->group(g);
  f.add("batch_size", t.batch_size, kBatchRange, "images per step (per process)")->group(g);
  f.add("microbatch", t.microbatch, {-1, kBatchRange.max},
        "split each batch into microbatches of this size (-1: off)")
      ->group(g);
  f.add("ema_rate", t.ema_rate, "comma-separated EMA rates")->group(g);
  f.add("log_interval", t.log_interval, {1, kMaxSteps}, "steps between log lines")->group(g);
  f.add("save_interval", t.save_interval, {1, kMaxSteps}, "steps between checkpoints")->group(g);
  f.add("resume_checkpoint", t.resume_checkpoint, "path/to/modelNNNNNN.pt to resume from")
      ->group(g);
  f.add("use_fp16", t.use_fp16, "16-bit training with loss scaling (the reference's scheme)")
      ->group(g);
  f.add("fp16_scale_growth", t.fp16_scale_growth, {0.0, 1.0}, "lg loss scale growth per good step")
      ->group(g);
  const std::string a = "idiff additions";
  f.add("log_dir", t.log_dir,
        "where logs and checkpoints go (else $OPENAI_LOGDIR, else /tmp/openai-<time>)")
      ->group(a);
  f.add("max_steps", t.max_steps, kStepRange,
        "stop after this many steps in total, resumed ones included (0: no limit)")
      ->group(a);
  f.add("max_minutes", t.max_minutes, {0.0, kNoMax},
        "stop and save after this many minutes (0: no limit)")
      ->group(a);
  f.add("seed", t.seed, "seed of the weights, data order, timesteps and noise")->group(a);
  f.add("device", t.device, "auto, cpu, cuda or cuda:N")->group(a);
  f.add("precision", t.precision, "fp32, fp16 (as --use_fp16 True) or bf16 (CUDA autocast)")
      ->group(a);
  f.add("skip_bad_images", t.skip_bad_images,
        "skip unreadable images with a warning instead of stopping")
      ->group(a);
  f.add("num_workers", t.num_workers, kWorkersRange, "background image-decoding threads")->group(a);
  f.add("dist_timeout", t.dist_timeout, kDistTimeoutRange,
        "multi-process runs: seconds to wait for the other ranks before giving up")
      ->group(a);
  add_max_image_pixels_flag(app, t.max_image_pixels);
}

void add_consistency_train_flags(CLI::App& app, TrainConfig& t) {
  Flags f(app);
  const std::string g = "Consistency distillation and training (consistency_models' cm_train.py)";
  f.add("teacher_model_path", t.teacher_model_path,
        "distillation: the teacher (idiff edm-train's or a released EDM file; an idiff train "
        "checkpoint, its flags from its flags.json)")
      ->group(g);
  f.add("teacher_dropout", t.teacher_dropout, {0.0, 0.999999},
        "distillation: the teacher network's dropout (it runs in eval mode)")
      ->group(g);
  f.add("guidance_scale", t.guidance_scale, {0.0, 1000.0},
        "distillation: the teacher's classifier-free guidance scale, uncond + s (cond - uncond), "
        "so the student learns the guided ODE (1: off; the teacher trained with "
        "--class_dropout_prob)")
      ->group(g);
  f.add("target_ema_mode", t.target_ema_mode, "the target network's EMA rate: fixed or adaptive")
      ->group(g);
  f.add("scale_mode", t.scale_mode,
        "the number of scales N over training: fixed, progressive, or progdist (halving, for "
        "--training_mode progdist)")
      ->group(g);
  f.add("start_ema", t.start_ema, {0.0, 0.999999}, "the target network's EMA rate (at the start)")
      ->group(g);
  f.add("start_scales", t.start_scales, {2, 100000}, "N at the start")->group(g);
  f.add("end_scales", t.end_scales, {2, 100000}, "N at the end (progressive)")->group(g);
  f.add("total_training_steps", t.total_training_steps, {1, kMaxSteps},
        "the schedules' length, and where training stops unless --max_steps says otherwise")
      ->group(g);
  f.add("distill_steps_per_iter", t.distill_steps_per_iter, {1, kMaxSteps},
        "progdist: steps per halving of N")
      ->group(g);
  f.add("loss_norm", t.loss_norm,
        "l1, l2, l2-32, pseudo_huber or lpips (with --lpips_vgg16 and --lpips_weights)")
      ->group(g);
  f.add("lpips_vgg16", t.lpips_vgg16,
        "lpips: torchvision's ImageNet VGG16 weights (vgg16-397923af.pth), brought by you")
      ->group(g);
  f.add("lpips_weights", t.lpips_weights,
        "lpips: LPIPS' five layer weights (piq's lpips_weights.pt), brought by you")
      ->group(g);
}

void apply_checkpoint_flags(CLI::App& app, const std::string& model_path,
                            const std::string& whose) {
  if (model_path.empty()) return;
  std::string source;
  const auto flags = read_model_flags(model_path, &source);
  if (flags.empty()) {
    std::cout << "no " << source
              << " beside the checkpoint: the model and diffusion settings are the flags' "
                 "(the weights do not record --noise_schedule, --diffusion_steps or "
                 "--training_mode)\n";
    return;
  }
  std::vector<std::string> taken;
  for (const auto& [name, value] : flags) {
    // `idiff sample`'s --sigma_max is the sampler's; --timestep_respacing is the command's.
    if (name == "sigma_max" || name == "timestep_respacing") continue;
    CLI::Option* o = app.get_option_no_throw("--" + name);
    if (o == nullptr || o->count() > 0) continue;
    try {
      o->clear();
      o->add_result(value);
      o->run_callback();
    } catch (const CLI::Error& e) {
      throw FileError(str(source, ": ", name, " '", value, "': ", e.what()));
    }
    taken.push_back(str("--", name, " ", value.empty() ? "''" : value));
  }
  if (!taken.empty()) {
    std::cout << (whose.empty() ? "flags from " + source + " (flags given win): "
                                : whose + " flags, from " + source + ": ")
              << join(taken, " ") << "\n";
  }
}

bool read_teacher_flags(const std::string& path, ModelConfig& model, DiffusionConfig& diffusion) {
  if (path.empty() || read_model_flags(path).empty()) return false;
  CLI::App app;
  add_model_and_diffusion_flags(app, model, diffusion, false);
  app.parse(std::vector<std::string>{});
  apply_checkpoint_flags(app, path, "the teacher's");
  return true;
}

void add_max_image_pixels_flag(CLI::App& app, int64_t& field) {
  Flags(app)
      .add("max_image_pixels", field, {1, int64_t{1} << 40},
           "refuse images with more pixels than this before decoding (a decompression bomb guard)")
      ->group("idiff additions");
}

void add_classifier_flags(Flags& f, ClassifierConfig& c) {
  const std::string g = "Classifier (guided-diffusion)";
  f.add("classifier_width", c.classifier_width, {1, 16384}, "base channels of the classifier")
      ->group(g);
  f.add("classifier_depth", c.classifier_depth, {1, 100}, "residual blocks per resolution")
      ->group(g);
  f.add("classifier_attention_resolutions", c.classifier_attention_resolutions,
        "resolutions with attention, e.g. 32,16,8")
      ->group(g);
  f.add("classifier_use_scale_shift_norm", c.classifier_use_scale_shift_norm,
        "FiLM-style scale-shift norm")
      ->group(g);
  f.add("classifier_resblock_updown", c.classifier_resblock_updown,
        "ResBlocks downsample between levels")
      ->group(g);
  f.add("classifier_pool", c.classifier_pool, "adaptive, attention, spatial or spatial_v2")
      ->group(g);
  f.add("classifier_use_fp16", c.classifier_use_fp16, "run the classifier's torso in float16")
      ->group(g);
}

namespace {

// The help of a solver setting: its registry row's, and which samplers read it.
std::string solver_setting_help(const std::string& name) {
  for (const SolverSettingRow& setting : solver_settings()) {
    if (name != setting.name) continue;
    std::vector<std::string> readers;
    for (const SamplerRow& row : sampler_registry()) {
      if (row.settings & setting.bit) readers.push_back(row.name);
    }
    return std::string(setting.help) + " (read by " + join(readers, ", ") + ")";
  }
  throw std::logic_error("no solver setting " + name);
}

}  // namespace

std::string sampler_table_help() {
  std::string out = "Samplers (--sampler):\n";
  for (const SamplerRow& row : sampler_registry()) {
    const std::string name = row.name;
    out += "  " + name + std::string(name.size() < 14 ? 14 - name.size() : 1, ' ') + row.help +
           " [settings: " + setting_names(row.settings) + "]\n";
  }
  return out;
}

void add_sampler_flags(Flags& f, SampleConfig& s, bool outputs) {
  const std::string g = "Sampling engine";
  f.add("sampler", s.sampler,
        sampler_names() +
            " (default: ddim with --use_ddim, unipc with --steps, else ddpm; listed below)")
      ->group(g);
  f.add("steps", s.steps, {0, 100000},
        "solver steps of --schedule (0: those of --timestep_respacing)")
      ->group(g);
  f.add("schedule", s.schedule,
        "with --steps: linspace, leading, trailing, karras or logsnr (default: the model's, "
        "see the log)")
      ->group(g);
  f.add("steps_file", s.steps_file, "the steps written by `idiff tune-steps`")->group(g);
  f.add("ts", s.ts,
        "multistep: indices of a --steps Karras spacing to visit, e.g. 0,22,39 "
        "(consistency_models')")
      ->group(g);
  f.add("t_start", s.t_start, {-1.0, 100000.0},
        "with --steps: the timestep to start at (-1: the last)")
      ->group(g);
  f.add("sigma_max", s.sigma_max, {-1.0, kNoMax},
        "with --steps: the first step goes from x_T straight to this noise level sigma/alpha "
        "when x_T is noisier (-1: the model's default, see the log; 0: never); Karras models "
        "(--training_mode edm, consistency_*): the level sampling starts at (-1: 80)")
      ->group(g);
  f.add("final_sigma", s.final_sigma,
        "with --steps: zero (the last step goes to sigma 0) or min (end at t = 0)")
      ->group(g);
  // The solver settings' ranges are the registry's (checked once, by make_solver).
  f.add("eta", s.eta, {-kNoMax, kNoMax}, solver_setting_help("eta"))->group(g);
  f.add("order", s.order, {INT64_MIN, INT64_MAX}, solver_setting_help("order"))->group(g);
  f.add("unipc_variant", s.unipc_variant, solver_setting_help("unipc_variant"))->group(g);
  f.add("lower_order_final", s.lower_order_final, solver_setting_help("lower_order_final"))
      ->group(g);
  f.add("s_churn", s.s_churn, {-kNoMax, kNoMax}, solver_setting_help("s_churn"))->group(g);
  f.add("s_tmin", s.s_tmin, {-kNoMax, kNoMax}, solver_setting_help("s_tmin"))->group(g);
  f.add("s_tmax", s.s_tmax, {-kNoMax, kNoMax}, solver_setting_help("s_tmax"))->group(g);
  f.add("s_noise", s.s_noise, {-kNoMax, kNoMax}, solver_setting_help("s_noise"))->group(g);
  f.add("dynamic_threshold", s.dynamic_threshold, {0.0, 1.0},
        "dynamic thresholding of x_0 at this quantile (e.g. 0.995) instead of --clip_denoised")
      ->group(g);
  if (!outputs) return;  // tune-steps: no starting image, no sample files
  f.add("generator", s.generator,
        "the noise: determ (one stream per rank, from --seed) or determ-indiv (one per image: "
        "an image's noise does not depend on --batch_size or the ranks)")
      ->group(g);
  f.add("init_image", s.init_image, "SDEdit: start from this image noised to --t_start")->group(g);
  f.add("save_float", s.save_float,
        "also write samples_float.safetensors (float32 [N, C, H, W] in [-1, 1], key samples)")
      ->group(g);
}

}  // namespace idiff::cli
