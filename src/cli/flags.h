// The flag table: every flag is bound to a field of a config struct (idiff/config.h) under
// the reference's name, with the struct's default shown in --help. Booleans take the
// reference's str2bool values (True/False, yes/no, 1/0).
#pragma once

#include "idiff/config.h"

#include <CLI/CLI.hpp>

#include <limits>
#include <string>

namespace idiff::cli {

// The values an integer flag accepts; every integer flag has one, checked when parsed.
struct IntRange {
  int64_t min, max;
};
// The values a number flag accepts (max = kNoMax: no upper bound); NaN and infinities
// never are.
struct RealRange {
  double min, max;
};
constexpr double kNoMax = std::numeric_limits<double>::infinity();

// Binds one flag to a field. Values are validated when parsed; a bad value is a
// ConfigError naming the flag (never clamped), reported as a flag error (exit 2).
class Flags {
 public:
  explicit Flags(CLI::App& app) : app_(app) {}
  CLI::Option* add(const std::string& name, int64_t& field, IntRange range,
                   const std::string& help);
  CLI::Option* add(const std::string& name, uint64_t& field, const std::string& help);
  CLI::Option* add(const std::string& name, double& field, RealRange range,
                   const std::string& help);
  CLI::Option* add(const std::string& name, std::string& field, const std::string& help);
  CLI::Option* add(const std::string& name, bool& field, const std::string& help);
  // A boolean flag whose value also sets `mirror` (learn_sigma feeds model and diffusion).
  CLI::Option* add(const std::string& name, bool& field, bool& mirror, const std::string& help);

 private:
  CLI::App& app_;
};

// image_size, num_channels, ..., use_scale_shift_norm and the diffusion flags
// (model_and_diffusion_defaults). With super_res, large_size/small_size replace image_size.
void add_model_and_diffusion_flags(CLI::App& app, ModelConfig& model, DiffusionConfig& diffusion,
                                   bool super_res = false);

// The diffusion flags alone (diffusion_steps ... rescale_learned_sigmas, --defaults, and
// consistency_models' --training_mode, --sigma_min ...), for commands without a UNet
// (classifier-train). `model`: the UNet's settings that --defaults and --training_mode set.
void add_diffusion_flags(CLI::App& app, DiffusionConfig& diffusion, bool super_res = false,
                         ModelConfig* model = nullptr);

// The training flags of scripts/image_train.py (data_dir ... fp16_scale_growth) and
// idiff's additions (log_dir, max_steps, max_minutes, seed, device, precision, ...).
void add_train_flags(CLI::App& app, TrainConfig& train);
// `idiff cm-train`'s own flags (cm_train_defaults).
void add_consistency_train_flags(CLI::App& app, TrainConfig& train);

// Ranges shared by several commands (README: "Limits").
constexpr IntRange kStepRange{0, kMaxSteps};
constexpr IntRange kBatchRange{1, 65536};
constexpr IntRange kImageSideRange{1, 16384};
constexpr IntRange kWorkersRange{0, 256};
constexpr RealRange kDistTimeoutRange{0.001, kNoMax};

// The model and diffusion flags a checkpoint was trained with (the flags.json idiff train
// writes beside it) become the values of this command's flags that were not given; a line
// on stdout says which (or that the file has none). A bad value is a FileError naming the
// flags file.
// `whose`: how the log line names the flags ("" for the command's own model; "the teacher's"
// for a distillation teacher, whose flags the command line does not give).
void apply_checkpoint_flags(CLI::App& app, const std::string& model_path,
                            const std::string& whose = "");

// A distillation teacher's own model and diffusion flags, from the flags.json beside `path`
// into `model` and `diffusion` (from their defaults). False when it has none (an EDM network
// of the student's flags, as the reference's teachers are).
bool read_teacher_flags(const std::string& path, ModelConfig& model, DiffusionConfig& diffusion);

// --max_image_pixels: images above it are refused before decoding.
void add_max_image_pixels_flag(CLI::App& app, int64_t& field);

// The sampling engine's flags (--sampler, --steps, --schedule, ...), for sample and tune-steps.
// guided-diffusion's classifier flags (classifier_defaults()).
void add_classifier_flags(Flags& f, ClassifierConfig& c);
// `outputs`: also --init_image and --save_float (sample, not tune-steps).
void add_sampler_flags(Flags& f, SampleConfig& s, bool outputs = true);
// The samplers of the registry, a line each with their settings: the footer of `idiff sample
// --help`.
std::string sampler_table_help();

}  // namespace idiff::cli
