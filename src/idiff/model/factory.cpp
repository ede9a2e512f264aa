#include "idiff/model/factory.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"

namespace idiff {

std::vector<int64_t> channel_mult_for(int64_t image_size, const std::string& flag) {
  switch (image_size) {
    case 32:
      return {1, 2, 2, 2};
    case 64:
      return {1, 2, 3, 4};
    case 256:
      return {1, 1, 2, 2, 4, 4};
    default:
      throw ConfigError(str(flag, " ", image_size,
                            " is not supported: the reference defines channel_mult only for "
                            "image sizes 32, 64 and 256"));
  }
}

std::vector<int64_t> attention_downsample_rates(const std::string& resolutions,
                                                int64_t image_size) {
  std::vector<int64_t> rates;
  for (int64_t res : parse_int_list(resolutions, "`attention_resolutions`")) {
    IDIFF_REQUIRE(res > 0, ConfigError,
                  "`attention_resolutions`: resolutions must be positive, got ", res, " in '",
                  resolutions, "'");
    rates.push_back(image_size / res);
  }
  return rates;
}

UNetOptions unet_options(const ModelConfig& c, bool super_res) {
  const int64_t size = super_res ? c.large_size : c.image_size;
  UNetOptions o;
  if (super_res) {
    IDIFF_REQUIRE(size == 64 || size == 256, ConfigError, "`large_size` ", size,
                  " is not supported: super-resolution models are defined for 64 and 256");
  }
  if (c.channel_mult.empty()) {
    o.channel_mult = channel_mult_for(size, super_res ? "`large_size`" : "`image_size`");
  } else {
    o.channel_mult = parse_int_list(c.channel_mult, "`channel_mult`");
    IDIFF_REQUIRE(!o.channel_mult.empty(), ConfigError, "`channel_mult` '", c.channel_mult,
                  "' names no level");
    for (int64_t m : o.channel_mult) {
      IDIFF_REQUIRE(m >= 1, ConfigError, "`channel_mult`: each level must be at least 1, got ", m,
                    " in '", c.channel_mult, "'");
    }
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

UNetModel create_model(const ModelConfig& config) {
  return UNetModel(unet_options(config));
}

UNetModel sr_create_model(const ModelConfig& config) {
  std::shared_ptr<UNetModelImpl> impl =
      std::make_shared<SuperResModelImpl>(unet_options(config, /*super_res=*/true));
  return UNetModel(std::move(impl));
}

}  // namespace idiff
