// Pillow's resampling, re-implemented for exact agreement (see image_resize.h for why not
// stb_image_resize). Names follow libImaging/Resample.c: precompute_coeffs,
// normalize_coeffs_8bpc, the horizontal and vertical passes.
#include "idiff/data/image_resize.h"

#include "idiff/common/error.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace idiff {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double box_filter(double x) {
  return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
}

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Fixed-point coefficients of one axis: output pixel i reads input pixels
// [start[i], start[i] + count[i]) with weights coeff[i * ksize + j].
struct Coeffs {
  int ksize = 0;
  std::vector<int> start, count;
  std::vector<int32_t> coeff;
};

Coeffs precompute_coeffs(int in_size, int out_size, ResampleFilter filter) {
  double (*fn)(double) = filter == ResampleFilter::Box ? box_filter : bicubic_filter;
  const double base_support = filter == ResampleFilter::Box ? 0.5 : 2.0;
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = base_support * filterscale;
  const double inv_filterscale = 1.0 / filterscale;

  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.start.resize(out_size);
  c.count.resize(out_size);
  c.coeff.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = int(center - support + 0.5);  // truncation, as Pillow's (int) cast
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = fn((x + xmin - center + 0.5) * inv_filterscale);
      ww += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      c.coeff[size_t(xx) * c.ksize + x] =
          w < 0 ? int(-0.5 + w * (1 << kPrecisionBits)) : int(0.5 + w * (1 << kPrecisionBits));
    }
    c.start[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t ss) {
  const int32_t v = ss >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

Image8 resample_horizontal(const Image8& in, int out_w, ResampleFilter filter) {
  const Coeffs c = precompute_coeffs(in.width, out_w, filter);
  const int ch = in.channels;
  Image8 out(out_w, in.height, ch);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* src = in.row(y);
    uint8_t* dst = out.row(y);
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &c.coeff[size_t(xx) * c.ksize];
      const uint8_t* p = src + size_t(c.start[xx]) * ch;
      for (int b = 0; b < ch; ++b) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < c.count[xx]; ++x) ss += p[x * ch + b] * k[x];
        dst[xx * ch + b] = clip8(ss);
      }
    }
  }
  return out;
}

Image8 resample_vertical(const Image8& in, int out_h, ResampleFilter filter) {
  const Coeffs c = precompute_coeffs(in.height, out_h, filter);
  const int ch = in.channels;
  const size_t stride = size_t(in.width) * ch;
  Image8 out(in.width, out_h, ch);
  for (int yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &c.coeff[size_t(yy) * c.ksize];
    const uint8_t* src = in.row(c.start[yy]);
    uint8_t* dst = out.row(yy);
    for (size_t i = 0; i < stride; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < c.count[yy]; ++y) ss += src[y * stride + i] * k[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

// RGBA -> RGBa (and LA -> La): Pillow's MULDIV255, c * a / 255 rounded.
void premultiply(Image8& im) {
  const int ch = im.channels;
  for (size_t p = 0; p < im.pixels.size(); p += ch) {
    const unsigned alpha = im.pixels[p + ch - 1];
    for (int b = 0; b < ch - 1; ++b) {
      const unsigned tmp = im.pixels[p + b] * alpha + 128;
      im.pixels[p + b] = uint8_t(((tmp >> 8) + tmp) >> 8);
    }
  }
}

// RGBa -> RGBA: c * 255 / a truncated and clipped; alpha 0 and 255 leave c as is.
void unpremultiply(Image8& im) {
  const int ch = im.channels;
  for (size_t p = 0; p < im.pixels.size(); p += ch) {
    const unsigned alpha = im.pixels[p + ch - 1];
    if (alpha == 0 || alpha == 255) continue;
    for (int b = 0; b < ch - 1; ++b) {
      const unsigned v = 255u * im.pixels[p + b] / alpha;
      im.pixels[p + b] = uint8_t(std::min(v, 255u));
    }
  }
}

}  // namespace

Image8 pil_resize(const Image8& image, int width, int height, ResampleFilter filter) {
  TORCH_CHECK(width > 0 && height > 0, "pil_resize: empty target ", width, "x", height);
  TORCH_CHECK(image.channels >= 1 && image.channels <= 4, "pil_resize: ", image.channels,
              " channels");
  if (width == image.width && height == image.height) return image;
  const bool alpha = image.channels == 2 || image.channels == 4;
  Image8 out = image;
  if (alpha) premultiply(out);
  // Pillow skips a pass whose axis keeps its size; horizontal first.
  if (width != out.width) out = resample_horizontal(out, width, filter);
  if (height != out.height) out = resample_vertical(out, height, filter);
  if (alpha) unpremultiply(out);
  return out;
}

Image8 reference_resize(Image8 image, int resolution, const std::string& what) {
  TORCH_CHECK(resolution > 0, "reference_resize: resolution ", resolution);
  // The short side is scaled to `resolution`, so a long thin image (a few hundred bytes of
  // PNG can declare 200000x1) would grow without bound before the crop; refused instead.
  const int64_t lo = std::min(image.width, image.height), hi = std::max(image.width, image.height);
  IDIFF_REQUIRE(lo > 0 && hi <= kMaxAspectRatio * lo, FileError, what, " is ", image.width, "x",
                image.height, ": more elongated than ", kMaxAspectRatio,
                ":1, which is refused (its short side scaled to ", resolution,
                " would make the long one ", hi * resolution / std::max<int64_t>(lo, 1), ")");
  while (std::min(image.width, image.height) >= 2 * resolution) {
    image = pil_resize(image, image.width / 2, image.height / 2, ResampleFilter::Box);
  }
  // Python: scale = resolution / min(size); round(x * scale), half to even. nearbyint
  // rounds half to even in the default rounding mode.
  const double scale = double(resolution) / std::min(image.width, image.height);
  const int w = int(std::nearbyint(image.width * scale));
  const int h = int(std::nearbyint(image.height * scale));
  image = pil_resize(image, w, h, ResampleFilter::Bicubic);

  const int crop_y = (image.height - resolution) / 2;
  const int crop_x = (image.width - resolution) / 2;
  const int ch = image.channels;
  Image8 rgb(resolution, resolution, 3);
  for (int y = 0; y < resolution; ++y) {
    const uint8_t* src = image.row(y + crop_y) + size_t(crop_x) * ch;
    uint8_t* dst = rgb.row(y);
    for (int x = 0; x < resolution; ++x, src += ch, dst += 3) {
      if (ch <= 2) {
        dst[0] = dst[1] = dst[2] = src[0];  // L -> RGB; LA drops alpha
      } else {
        dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];  // RGBA drops alpha
      }
    }
  }
  return rgb;
}

void rgb_to_chw_float(const Image8& rgb, float* out) {
  TORCH_CHECK(rgb.channels == 3, "rgb_to_chw_float: ", rgb.channels, " channels");
  const size_t plane = size_t(rgb.width) * rgb.height;
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) out[c * plane + i] = float(rgb.pixels[i * 3 + c]) / 127.5f - 1.0f;
  }
}

}  // namespace idiff
