// PNG decoding with libpng rather than stb_image. stb_image inflates a PNG's whole zlib
// stream into a buffer it grows without limit, so a 2 MB file that declares 32x32 pixels
// can inflate to gigabytes before anything is checked; it also accepts chunks whose CRC is
// wrong. libpng (Debian's libpng16, maintained and fuzzed) reads the image row by row into
// a buffer the header's size fixes, never inflates past the last row, refuses a critical
// chunk with a bad CRC (as Pillow, which the reference reads images with) and takes
// limits on the width, height and chunk sizes.
#pragma once

#include "idiff/data/image_resize.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace idiff {

// True when the bytes start with the PNG signature.
bool is_png(const uint8_t* data, size_t size);

// Decodes a PNG into its own channels as stb_image would (1 grey, 2 grey + alpha, 3 RGB,
// 4 RGBA; palettes become RGB(A), tRNS an alpha channel, 16-bit samples their high byte),
// without gamma conversion (as Pillow and stb_image). FileError naming `what` when libpng
// refuses the file or it declares more than `max_pixels` pixels.
Image8 decode_png(const uint8_t* data, size_t size, const std::string& what, int64_t max_pixels,
                  const std::string& raise_hint);

}  // namespace idiff
