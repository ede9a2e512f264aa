// Pillow-compatible image resampling, so that images reach the model with the same pixel
// values as in the reference's ImageDataset (improved_diffusion/image_datasets.py), which
// resizes with PIL: BOX halving while the short side is at least twice the target, then
// BICUBIC (a = -0.5) so the short side equals the target, then a centre crop.
//
// Pillow's resampling (libImaging/Resample.c) is separable and works in 8-bit fixed
// point: coefficients per output pixel from the filter centred at (x + 0.5) * scale,
// support widened by the scale when shrinking, cut at the borders and renormalised,
// rounded to 22-bit integers; the horizontal pass is rounded to uint8 before the
// vertical one. Images with alpha are resized premultiplied. We reproduce this exactly
// (tests/test_data_resize.cpp compares with Pillow's output bit for bit) instead of using
// Debian's stb_image_resize (v1): its Catmull-Rom filter is the same cubic, but it
// extends the image at the borders (clamp/reflect) where Pillow renormalises the cut
// kernel, samples and accumulates differently (float, no intermediate uint8 rounding) and
// has no premultiplied-alpha round trip. Measured against Pillow 13 on noisy RGB images
// (37x45->20x16, 100x70->46x32, 29x23->50x40, 22x50->20x45; STBIR_EDGE_CLAMP, linear
// colour space): 26-38% of the values differ, by up to 16 levels of 255 (mean 0.35-0.6).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// An 8-bit image, rows of interleaved channels: 1 grey (PIL "L"), 2 grey + alpha ("LA"),
// 3 RGB, 4 RGBA.
struct Image8 {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // [height][width][channels]

  Image8() = default;
  Image8(int w, int h, int c) : width(w), height(h), channels(c), pixels(size_t(w) * h * c) {}
  uint8_t* row(int y) { return pixels.data() + size_t(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + size_t(y) * width * channels; }
};

enum class ResampleFilter { Box, Bicubic };

// PIL's Image.resize(size, resample=filter) for an L, LA, RGB or RGBA image: the same
// size returns a copy; alpha images are resized premultiplied (RGBA -> RGBa -> RGBA).
Image8 pil_resize(const Image8& image, int width, int height, ResampleFilter filter);

// The reference's transform of one image before it becomes a tensor: box halvings,
// bicubic to a short side of `resolution` (new sizes rounded half-to-even, as Python's
// round), conversion to RGB (grey replicated, alpha dropped) and the centre crop.
// Returns an RGB image of resolution x resolution. An image more elongated than
// kMaxAspectRatio:1 is a FileError naming `what` (its resized long side would be unbounded).
constexpr int64_t kMaxAspectRatio = 64;
Image8 reference_resize(Image8 image, int resolution, const std::string& what = "the image");

// RGB uint8 [H][W][3] -> float32 CHW in [-1, 1] as x / 127.5 - 1 (float32 arithmetic, as
// the reference's numpy code). `out` holds 3 * H * W floats.
void rgb_to_chw_float(const Image8& rgb, float* out);

}  // namespace idiff
