// The pieces UNetModel and EncoderUNetModel (the classifier) share, built once: the
// ResBlock and AttentionBlock of given widths, the down path and the middle block
// (reference: unet.py UNetModel.__init__ and guided-diffusion's EncoderUNetModel.__init__,
// whose first halves are the same code).
#pragma once

#include "idiff/model/unet.h"

#include <vector>

namespace idiff {

ResBlock make_res_block(const UNetOptions& o, int64_t in, int64_t out, bool up = false,
                        bool down = false);
// num_head_channels > 0 (guided-diffusion) fixes the head width instead of the count.
AttentionBlock make_attention(const UNetOptions& o, int64_t channels, int64_t heads);

struct DownPath {
  std::vector<TimestepEmbedSequential> blocks;  // the stem, then ResBlocks and resamplers
  std::vector<int64_t> block_channels;          // the output channels of each block
  int64_t channels = 0;                         // at the bottom
  int64_t downsample_rate = 1;                  // at the bottom
};
DownPath make_down_path(const UNetOptions& o);

// ResBlock, attention, ResBlock at `channels`.
TimestepEmbedSequential make_middle_block(const UNetOptions& o, int64_t channels);

// The reference's convert_module_to_f16/f32 on every convolution inside `module`.
void convert_convolutions(torch::nn::Module& module, at::ScalarType dtype);

}  // namespace idiff
