#include "idiff/model/factory.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/model/inspect/summary.h"
#include "idiff/model/state_dict.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace idiff {

std::vector<double> channel_mult_for(int64_t image_size, const std::string& flag) {
  switch (image_size) {
    case 32:
      return {1, 2, 2, 2};
    case 64:
      return {1, 2, 3, 4};
    case 128:  // guided-diffusion
      return {1, 1, 2, 3, 4};
    case 256:
      return {1, 1, 2, 2, 4, 4};
    case 512:  // guided-diffusion
      return {0.5, 1, 1, 2, 2, 4, 4};
    default:
      throw ConfigError(str(flag, " ", image_size,
                            " has no default channel_mult (image sizes 32, 64, 128, 256 and 512 "
                            "have one); give `channel_mult`"));
  }
}

std::vector<double> parse_channel_mult(const std::string& text) {
  std::vector<double> mult = parse_double_list(text, "`channel_mult`");
  IDIFF_REQUIRE(!mult.empty(), ConfigError, "`channel_mult` '", text, "' names no level");
  for (double m : mult) {
    IDIFF_REQUIRE(m > 0, ConfigError, "`channel_mult`: each level must be positive, got ", m,
                  " in '", text, "'");
  }
  return mult;
}

std::vector<int64_t> attention_downsample_rates(const std::string& resolutions, int64_t image_size,
                                                const std::string& flag) {
  std::vector<int64_t> rates;
  for (int64_t res : parse_int_list(resolutions, flag)) {
    IDIFF_REQUIRE(res > 0, ConfigError, flag, ": resolutions must be positive, got ", res, " in '",
                  resolutions, "'");
    rates.push_back(image_size / res);
  }
  return rates;
}

UNetOptions unet_options(const ModelConfig& c, bool super_res) {
  const int64_t size = super_res ? c.large_size : c.image_size;
  UNetOptions o;
  if (!c.channel_mult.empty()) {
    o.channel_mult = parse_channel_mult(c.channel_mult);
  } else if (super_res) {
    // sr_create_model's: 64 and 256 as the UNet's, and guided-diffusion's 512 upsampler
    // keeps 256's levels.
    IDIFF_REQUIRE(size == 64 || size == 256 || size == 512, ConfigError, "`large_size` ", size,
                  " has no default channel_mult (super-resolution models are defined for 64, "
                  "256 and 512); give `channel_mult`");
    o.channel_mult = channel_mult_for(size == 512 ? 256 : size, "`large_size`");
  } else {
    o.channel_mult = channel_mult_for(size, "`image_size`");
  }
  IDIFF_REQUIRE(c.num_channels > 0, ConfigError, "`num_channels` must be positive, got ",
                c.num_channels);
  IDIFF_REQUIRE(c.dropout >= 0.0 && c.dropout < 1.0, ConfigError,
                "`dropout` must be in [0, 1), got ", c.dropout);
  IDIFF_REQUIRE(c.image_channels == 1 || c.image_channels == 3, ConfigError,
                "`image_channels` must be 1 (grey) or 3 (RGB), got ", c.image_channels);
  o.in_channels = c.image_channels;
  o.model_channels = c.num_channels;
  o.out_channels = c.learn_sigma ? 2 * c.image_channels : c.image_channels;
  o.num_res_blocks = c.num_res_blocks;
  o.attention_resolutions = attention_downsample_rates(c.attention_resolutions, size);
  o.dropout = c.dropout;
  o.num_classes = c.class_cond ? kNumClasses : 0;
  IDIFF_REQUIRE(c.class_dropout_prob >= 0 && c.class_dropout_prob < 1, ConfigError,
                "`class_dropout_prob` must lie in [0, 1), got ", c.class_dropout_prob);
  IDIFF_REQUIRE(c.class_dropout_prob == 0 || c.class_cond, ConfigError,
                "`class_dropout_prob` needs a class-conditional model (`class_cond` True)");
  o.null_label = c.class_dropout_prob > 0;
  o.use_checkpoint = c.use_checkpoint;
  o.num_heads = c.num_heads;
  o.num_heads_upsample = c.num_heads_upsample;
  o.use_scale_shift_norm = c.use_scale_shift_norm;
  IDIFF_REQUIRE(c.num_head_channels == -1 || c.num_head_channels > 0, ConfigError,
                "`num_head_channels` must be positive or -1, got ", c.num_head_channels);
  o.num_head_channels = c.num_head_channels;
  o.resblock_updown = c.resblock_updown;
  o.use_new_attention_order = c.use_new_attention_order;
  IDIFF_REQUIRE(o.num_heads > 0, ConfigError, "`num_heads` must be positive, got ", o.num_heads);
  IDIFF_REQUIRE(o.num_heads_upsample == -1 || o.num_heads_upsample > 0, ConfigError,
                "`num_heads_upsample` must be positive or -1, got ", o.num_heads_upsample);
  return o;
}

namespace {

UNetModel build(const UNetOptions& o, bool super_res) {
  if (!super_res) return UNetModel(o);
  return UNetModel(std::shared_ptr<UNetModelImpl>(std::make_shared<SuperResModelImpl>(o)));
}

// Flags that describe a model larger than memory end in the allocator's failure: said as
// a setting (exit 2) with its size, not as LibTorch's "[enforce fail at alloc_cpu.cpp]".
UNetModel build_or_explain(const ModelConfig& config, bool super_res) {
  const UNetOptions o = unet_options(config, super_res);
  try {
    return build(o, super_res);
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("DefaultCPUAllocator") == std::string::npos) throw;
    const int64_t n = estimated_parameter_count(config, super_res);
    throw ConfigError(str("the model these flags describe (`num_channels` ", config.num_channels,
                          ", `num_res_blocks` ", config.num_res_blocks, ", ", o.channel_mult.size(),
                          " levels) does not fit in memory",
                          n > 0
                              ? str(": ", with_commas(n), " parameters, ", with_commas(n * 4 >> 20),
                                    " MiB in float32 before gradients and optimizer state")
                              : std::string()));
  }
}

}  // namespace

UNetModel create_model(const ModelConfig& config) {
  return build_or_explain(config, false);
}

UNetModel sr_create_model(const ModelConfig& config) {
  return build_or_explain(config, true);
}

int64_t estimated_parameter_count(const ModelConfig& config, bool super_res) {
  // Every weight's size is a quadratic in the base width c (level widths are multiples of
  // it) and, past the first, every residual block of a level repeats the same shapes, so
  // the count is (a c^2 + b c + d) n + (e c^2 + f c + g) in c and num_res_blocks n. Six
  // small models (c = w, 2w, 3w; n = 1, 2) fix it; building the model itself is not needed.
  const UNetOptions o = unet_options(config, super_res);
  // The smallest width whose levels keep whole GroupNorm groups and attention heads.
  const bool fractional = std::any_of(o.channel_mult.begin(), o.channel_mult.end(),
                                      [](double m) { return m != std::floor(m); });
  int64_t w = fractional ? 64 : 32;
  for (int64_t heads : {o.num_heads, o.num_heads_upsample, o.num_head_channels})
    if (heads > 0) w = std::lcm(w, heads);
  if (w > 256) return -1;
  const auto count = [&](int64_t k, int64_t n) {
    UNetOptions p = o;
    p.model_channels = k * w;
    p.num_res_blocks = n;
    return parameter_count(*build(p, super_res));
  };
  const auto in_width = [&](int64_t n) {  // Lagrange through k = 1, 2, 3, at k = c / w
    const double k = static_cast<double>(o.model_channels) / static_cast<double>(w);
    const double p1 = count(1, n), p2 = count(2, n), p3 = count(3, n);
    return p1 * (k - 2) * (k - 3) / 2 - p2 * (k - 1) * (k - 3) + p3 * (k - 1) * (k - 2) / 2;
  };
  const double one = in_width(1), two = in_width(2);
  return std::llround(one + static_cast<double>(o.num_res_blocks - 1) * (two - one));
}

EncoderUNetModel create_classifier(const ClassifierConfig& c, int64_t image_size,
                                   int64_t image_channels, int64_t num_classes) {
  IDIFF_REQUIRE(num_classes >= 1, ConfigError, "a classifier needs at least one class, got ",
                num_classes);
  IDIFF_REQUIRE(c.classifier_width > 0 && c.classifier_width % 32 == 0, ConfigError,
                "`classifier_width` must be a positive multiple of 32 (its GroupNorm has 32 "
                "groups), got ",
                c.classifier_width);
  EncoderUNetOptions e;
  e.image_size = image_size;
  e.pool = c.classifier_pool;
  UNetOptions& o = e.unet;
  o.channel_mult = channel_mult_for(image_size);
  o.in_channels = image_channels;
  o.model_channels = c.classifier_width;
  o.out_channels = num_classes;
  o.num_res_blocks = c.classifier_depth;
  o.attention_resolutions = attention_downsample_rates(
      c.classifier_attention_resolutions, image_size, "`classifier_attention_resolutions`");
  o.num_head_channels = 64;
  o.use_scale_shift_norm = c.classifier_use_scale_shift_norm;
  o.resblock_updown = c.classifier_resblock_updown;
  return EncoderUNetModel(e);
}

}  // namespace idiff
