#include "idiff/data/png_decode.h"

#include "idiff/common/error.h"

#include <png.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace idiff {
namespace {

// libpng reports errors by longjmp from its error callback: the message is kept here and
// the jump lands in decode_png's setjmp, which destroys the read struct and throws.
struct Reader {
  const uint8_t* data;
  size_t size;
  size_t at = 0;
  std::string error;
};

void on_error(png_structp png, png_const_charp message) {
  static_cast<Reader*>(png_get_error_ptr(png))->error = message;
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void read_bytes(png_structp png, png_bytep out, size_t n) {
  Reader& r = *static_cast<Reader*>(png_get_io_ptr(png));
  if (n > r.size - r.at) png_error(png, "the file ends early");
  std::memcpy(out, r.data + r.at, n);
  r.at += n;
}

// The transforms to stb_image's channels and 8 bits; returns the channel count.
int set_transforms(png_structp png, png_infop info) {
  const int color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  return png_get_channels(png, info);
}

}  // namespace

bool is_png(const uint8_t* data, size_t size) {
  return size >= 8 && png_sig_cmp(data, 0, 8) == 0;
}

Image8 decode_png(const uint8_t* data, size_t size, const std::string& what, int64_t max_pixels,
                  const std::string& raise_hint) {
  // What changes between setjmp and a longjmp lives on the heap behind a pointer set before
  // setjmp (a changed automatic variable would be indeterminate after the jump).
  struct Decoding {
    Reader reader;
    Image8 image;
    std::vector<png_bytep> rows;
  };
  const auto state = std::make_unique<Decoding>(Decoding{Reader{data, size, 0, {}}, {}, {}});
  Decoding* const d = state.get();
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &d->reader, on_error, on_warning);
  IDIFF_REQUIRE(png != nullptr, Error, "libpng: out of memory");
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png)) != 0) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw FileError(str("cannot decode ", what, ": ", d->reader.error));
  }
  png_set_read_fn(png, &d->reader, read_bytes);
  // No side beyond what the pixel limit allows, and no ancillary chunk above 8 MiB.
  const auto side = static_cast<png_uint_32>(std::min<int64_t>(max_pixels, PNG_UINT_31_MAX));
  png_set_user_limits(png, side, side);
  png_set_chunk_malloc_max(png, 8u << 20);
  png_read_info(png, info);
  const int64_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w * h > max_pixels) {
    d->reader.error = str("it is ", w, "x", h, " (", w * h, " pixels), more than the limit of ",
                          max_pixels, " pixels (", raise_hint, ")");
    png_longjmp(png, 1);
  }
  d->image = Image8(static_cast<int>(w), static_cast<int>(h), set_transforms(png, info));
  for (int y = 0; y < d->image.height; ++y) d->rows.push_back(d->image.row(y));
  // The rows alone: the rest of the stream (png_read_end) is never inflated.
  png_read_image(png, d->rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return std::move(d->image);
}

}  // namespace idiff
