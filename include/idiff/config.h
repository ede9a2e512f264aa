// The settings structs shared by every layer, with the reference's defaults
// (improved_diffusion/script_util.py: model_and_diffusion_defaults(),
// sr_model_and_diffusion_defaults()). Only cli/ turns flags into these; the library takes
// the structs, never flags.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace idiff {

// --dist_timeout's default (DistContext::kDefaultTimeoutSeconds): how long a rank waits for
// the others at the rendezvous and in every collective before it gives up.
constexpr double kDefaultDistTimeoutSeconds = 300.0;

// Limits on what a user or a file can ask for (README: "Limits").
// Step counts, intervals and the step number in a checkpoint's name.
constexpr int64_t kMaxSteps = 1000000000000;  // 1e12
// Images with more pixels are refused before decoding (--max_image_pixels raises it):
// Pillow's default decompression-bomb limit, 2 * 1024^3 / 4 / 3.
constexpr int64_t kDefaultMaxImagePixels = 178956970;

// The UNet's shape. Field names are the reference's flag names.
struct ModelConfig {
  int64_t image_size = 64;
  // idiff's addition: 1 for grey images (Fashion-MNIST), 3 for RGB as every reference model.
  int64_t image_channels = 3;
  int64_t num_channels = 128;
  int64_t num_res_blocks = 2;
  int64_t num_heads = 4;
  int64_t num_heads_upsample = -1;  // -1: same as num_heads
  std::string attention_resolutions = "16,8";
  double dropout = 0.0;
  bool learn_sigma = false;
  bool class_cond = false;
  bool use_checkpoint = false;
  bool use_scale_shift_norm = true;
  // guided-diffusion's UNet flags (script_util.py model_and_diffusion_defaults there).
  int64_t num_head_channels = -1;  // > 0: attention heads of this many channels
  std::string channel_mult = "";   // e.g. "1,2,2"; "": the default for the image size
  bool resblock_updown = false;
  bool use_new_attention_order = false;
  // Sampling: the torso runs in float16 (guided-diffusion's use_fp16; the file holds float32
  // weights, converted at load). Training has its own --use_fp16 (TrainConfig).
  bool use_fp16 = false;
  bool use_bf16 = false;  // idiff's alternative: bfloat16 (CUDA; the CPU runs it slowly)
  // Classifier-free guidance (Ho & Salimans 2022), idiff's addition: > 0 gives the class
  // embedding a null label (row kNumClasses) that training uses for this share of the
  // images, so that sampling can guide with --guidance_scale.
  double class_dropout_prob = 0.0;
  // Super-resolution only (sr_model_and_diffusion_defaults): the model works at
  // large_size and is conditioned on an image of small_size.
  int64_t large_size = 256;
  int64_t small_size = 64;
};

// guided-diffusion's noisy-image classifier (its script_util.py classifier_defaults()); the
// image size and channels are the model's (--image_size, --image_channels).
struct ClassifierConfig {
  bool classifier_use_fp16 = false;
  int64_t classifier_width = 128;
  int64_t classifier_depth = 2;
  std::string classifier_attention_resolutions = "32,16,8";
  bool classifier_use_scale_shift_norm = true;
  bool classifier_resblock_updown = true;
  std::string classifier_pool = "attention";
};

// The Gaussian diffusion process. learn_sigma mirrors ModelConfig::learn_sigma (one flag
// sets both, as in the reference's create_model_and_diffusion).
struct DiffusionConfig {
  bool learn_sigma = false;
  bool sigma_small = false;
  int64_t diffusion_steps = 1000;
  std::string noise_schedule = "linear";
  std::string timestep_respacing = "";
  bool use_kl = false;
  bool predict_xstart = false;
  bool rescale_timesteps = true;
  bool rescale_learned_sigmas = true;
  // Whose defaults the two above started from: "improved-diffusion" (True, the reference's)
  // or "guided-diffusion" (False; its checkpoints do not record them). For the logs, which
  // say it; the command line sets the two fields from it (--defaults). "consistency-models":
  // consistency_models' model defaults and --training_mode edm.
  std::string defaults = "improved-diffusion";
  // The model family and its training objective (consistency_models' --training_mode;
  // training_objective.h): improved_diffusion (the Gaussian diffusion above, also
  // guided-diffusion's), or a Karras denoiser (karras_diffusion.h): edm and progdist (EDM's
  // scalings), consistency_distillation, consistency_training (boundary-condition scalings).
  std::string training_mode = "improved_diffusion";
  // The Karras denoiser's settings (cm/script_util.py model_and_diffusion_defaults).
  double sigma_min = 0.002;
  double sigma_max = 80.0;  // `idiff sample` reads its own --sigma_max (SampleConfig)
  double sigma_data = 0.5;
  std::string weight_schedule = "karras";
};

// The training loop (reference: scripts/image_train.py create_argparser and
// train_util.TrainLoop). Fields after the reference's are idiff's additions.
struct TrainConfig {
  std::string data_dir = "";
  std::string schedule_sampler = "uniform";
  double lr = 1e-4;
  double weight_decay = 0.0;
  // adamw (improved-/guided-diffusion's) or radam (consistency_models' edm_train.py and
  // cm_train.py: edm-train and cm-train take it by default).
  std::string optimizer = "adamw";
  int64_t lr_anneal_steps = 0;
  int64_t batch_size = 1;
  int64_t microbatch = -1;  // -1: no microbatching
  std::string ema_rate = "0.9999";
  int64_t log_interval = 10;
  int64_t save_interval = 10000;
  std::string resume_checkpoint = "";
  bool use_fp16 = false;
  double fp16_scale_growth = 1e-3;
  // Additions.
  std::string log_dir = "";  // else $OPENAI_LOGDIR, else a new folder under /tmp
  int64_t max_steps = 0;     // stop after this many steps in total (resumed ones count)
  double max_minutes = 0.0;  // stop (and save) after this much wall time in this run
  uint64_t seed = 0;
  std::string device = "auto";
  std::string precision = "fp32";  // fp32, fp16 (same as --use_fp16 True), bf16 (CUDA autocast)
  bool skip_bad_images = false;
  int64_t num_workers = 2;                            // background decoding threads
  int64_t max_image_pixels = kDefaultMaxImagePixels;  // larger images are refused
  double dist_timeout = kDefaultDistTimeoutSeconds;   // seconds; multi-process runs only
  // Consistency distillation and training (consistency_models' cm_train_defaults; `idiff
  // cm-train`). loss_norm's reference default is lpips, whose weights idiff does not ship:
  // lpips needs the user's lpips_vgg16 and lpips_weights files (model/lpips.h).
  std::string teacher_model_path = "";  // an EDM checkpoint (distillation)
  double teacher_dropout = 0.1;
  // Distillation from a classifier-free guided teacher: uncond + s (cond - uncond); 1: off.
  double guidance_scale = 1.0;
  std::string target_ema_mode = "fixed";  // fixed or adaptive
  std::string scale_mode = "fixed";       // fixed or progressive
  double start_ema = 0.0;
  int64_t start_scales = 40;
  int64_t end_scales = 40;
  int64_t distill_steps_per_iter = 50000;
  std::string loss_norm = "l2";    // l1, l2, l2-32, pseudo_huber, lpips
  std::string lpips_vgg16 = "";    // torchvision's VGG16 state dict (vgg16-397923af.pth)
  std::string lpips_weights = "";  // LPIPS' five layer weights (piq's lpips_weights.pt)
  int64_t total_training_steps = 600000;
};

// Sampling and evaluation (reference: scripts/image_sample.py, image_nll.py,
// super_res_sample.py). Fields after the reference's are idiff's additions.
struct SampleConfig {
  bool clip_denoised = true;
  int64_t num_samples = 10000;  // image_nll.py's default is 1000 (set by `idiff nll`)
  int64_t batch_size = 16;      // image_nll.py's default is 1
  bool use_ddim = false;
  std::string model_path = "";
  std::string data_dir = "";      // nll: the images to evaluate
  std::string base_samples = "";  // super-res-sample: samples_*.npz to upsample
  // Additions.
  double eta = 0.0;          // DDIM eta (0: deterministic)
  uint64_t seed = 0;         // noise and labels
  std::string classes = "";  // --class: "N" or "N,M,...", cycled over the samples ("": random)
  std::string log_dir = "";  // where outputs go (else $OPENAI_LOGDIR, else /tmp/openai-<time>)
  std::string device = "auto";
  bool save_pngs = false;          // also one PNG per sample
  bool cuda_graph = true;          // CUDA: replay each sampling step as a captured graph
  int64_t grid_size = 64;          // samples in the PNG grid (0: none)
  std::string initial_noise = "";  // a tensor file holding x_T [num_samples, 3, H, W]
  int64_t num_workers = 2;         // nll: decoding threads
  int64_t max_image_pixels = kDefaultMaxImagePixels;  // nll: larger images are refused
  double dist_timeout = kDefaultDistTimeoutSeconds;   // seconds; multi-process runs only
  // The sampling engine (diffusion/sampling/): which solver, over which steps.
  std::string sampler = "";   // "": ddim with --use_ddim, else ddpm (the reference's)
  int64_t steps = 0;          // 0: the steps of --timestep_respacing (else every step)
  std::string schedule = "";  // with --steps: the step schedule ("": karras)
  double t_start = -1;        // the timestep sampling starts at (-1: the last)
  // with --steps: cap of the first level after x_T (-1: default, 0: none); Karras models:
  // where sampling starts (-1: the diffusion's sigma_max, 80)
  double sigma_max = -1;
  std::string final_sigma = "zero";  // zero: the last step goes to sigma 0; min: it ends at t = 0
  std::string steps_file = "";       // a schedule written by `idiff tune-steps`
  std::string steps_json = "";       // a steps file's contents (the server's steps_file field)
  std::string ts = "";               // multistep: indices of a --steps Karras spacing ("0,22,39")
  std::string generator = "determ";  // determ: a stream per rank; determ-indiv: per image
  int64_t order = 2;                 // unipc's order
  std::string unipc_variant = "bh2";
  bool lower_order_final = true;  // multistep solvers: lower orders in the last steps (< 15 steps)
  double dynamic_threshold = 0;   // > 0: dynamic thresholding at this quantile instead of clipping
  // heun and dpm: Karras et al.'s stochastic churn (SolverOptions)
  double s_churn = 0.0;
  double s_tmin = 0.0;
  double s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1.0;
  std::string init_image = "";  // SDEdit: start from this image noised to --t_start
  // `idiff edit` (consistency models' zero-shot editing, karras_edit.h): the task
  // (inpaint, colorize, superres), the image and, to inpaint, the mask (white: keep).
  std::string edit_task = "";
  std::string edit_image = "";
  std::string edit_mask = "";
  // `idiff edit` with an improved-/guided-diffusion model: RePaint (repaint.h); 0: its
  // defaults (10 and 10).
  int64_t resample_jumps = 0;
  int64_t jump_length = 0;
  bool save_float = false;  // also write samples_float.safetensors (float32, [-1, 1])
  // Guidance (guided-diffusion's classifier_sample.py; Ho & Salimans 2022).
  std::string classifier_path = "";  // a noisy-image classifier: classifier guidance
  double classifier_scale = 1.0;     // its gradient's scale
  double guidance_scale = 1.0;       // classifier-free: uncond + s (cond - uncond); 1: off
};

// `idiff classifier-train` (guided-diffusion's scripts/classifier_train.py). Fields after
// the reference's are idiff's additions.
struct ClassifierTrainConfig {
  std::string data_dir = "";
  std::string val_data_dir = "";
  bool noised = true;  // train on x_t at sampled timesteps (else clean images at t = 0)
  int64_t iterations = 150000;
  double lr = 3e-4;
  double weight_decay = 0.0;
  bool anneal_lr = false;
  int64_t batch_size = 4;
  int64_t microbatch = -1;
  std::string schedule_sampler = "uniform";
  std::string resume_checkpoint = "";
  int64_t log_interval = 10;
  int64_t eval_interval = 5;
  int64_t save_interval = 10000;
  // Additions.
  std::string log_dir = "";
  uint64_t seed = 0;
  std::string device = "auto";
  int64_t num_workers = 2;
  int64_t max_image_pixels = kDefaultMaxImagePixels;
};

// `idiff tune-steps`: the search for a model's step schedule (diffusion/sampling/tune_steps.h).
struct TuneConfig {
  // The fine solution the schedule is fitted to: by default DDIM through every step from
  // the same start, with the same clipping (what `idiff sample` approximates).
  std::string reference_sampler = "ddim";
  int64_t reference_steps = 0;  // 0: every step of the process; else that many logsnr steps
  int64_t iterations = 6;       // sweeps of the coordinate search
  // A consistency model (--sampler multistep): its --ts searched against the fine solution of
  // the model it was distilled from (scripts/ternary_search.py's role), for this many calls.
  std::string teacher_model_path = "";
  int64_t model_calls = 2;
};

// Number of classes of a class-conditional model (script_util.NUM_CLASSES).
constexpr int64_t kNumClasses = 1000;

}  // namespace idiff
