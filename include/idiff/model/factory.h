// Building models from the reference's flags (reference: script_util.py create_model,
// sr_create_model): channel_mult from the image size, attention resolutions turned into
// downsample rates, 6 output channels when the variance is learned.
#pragma once

#include "idiff/config.h"
#include "idiff/model/encoder_unet.h"
#include "idiff/model/unet.h"

#include <string>
#include <vector>

namespace idiff {

// (1,2,2,2) for 32, (1,2,3,4) for 64, (1,1,2,2,4,4) for 256, and guided-diffusion's
// (1,1,2,3,4) for 128 and (0.5,1,1,2,2,4,4) for 512; ConfigError naming `flag` for any
// other size.
std::vector<double> channel_mult_for(int64_t image_size, const std::string& flag = "`image_size`");
// An explicit `channel_mult` ("1,2,2"; fractions allowed): ConfigError unless every level is
// positive.
std::vector<double> parse_channel_mult(const std::string& text);

// "16,8" at image size 32 -> {2, 4}: each resolution becomes image_size / resolution.
std::vector<int64_t> attention_downsample_rates(
    const std::string& resolutions, int64_t image_size,
    const std::string& flag = "`attention_resolutions`");

// The UNetOptions create_model / sr_create_model would build.
UNetOptions unet_options(const ModelConfig& config, bool super_res = false);

// create_model: a UNetModel for config.image_size.
UNetModel create_model(const ModelConfig& config);
// sr_create_model: a SuperResModel for config.large_size (64 or 256), returned through
// the UNetModel handle (its forward_kwargs takes low_res).
UNetModel sr_create_model(const ModelConfig& config);

// The parameter count of the model create_model / sr_create_model would build, without
// building it (for flags that describe a model too large to allocate). -1 where the
// options are too unusual to estimate (attention heads wider than 256 channels).
int64_t estimated_parameter_count(const ModelConfig& config, bool super_res = false);

// guided-diffusion's create_classifier: an EncoderUNetModel for image_size with heads of 64
// channels and num_classes outputs (guided-diffusion's 1000, or the classes of the data a
// classifier is trained on), float32 weights (convert_to_fp16 with classifier_use_fp16 is
// the caller's, after loading).
EncoderUNetModel create_classifier(const ClassifierConfig& config, int64_t image_size,
                                   int64_t image_channels = 3, int64_t num_classes = kNumClasses);

}  // namespace idiff
