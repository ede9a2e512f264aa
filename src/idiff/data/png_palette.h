// A check stb_image does not make: in a palette PNG every pixel's index must name an entry
// of its palette (PNG spec, 11.2.3). stb_image reads an index past the palette from
// uninitialised memory, so such a file would decode differently from run to run; idiff
// refuses it instead. stb_image exposes neither the indices nor a check, hence this
// small reader (zlib inflates, the row filters and Adam7 passes are the spec's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace idiff {

// For a palette PNG whose pixels name entries past its palette: a description such as
// "palette index 7 is past the palette's 4 entries". Empty for every other file, broken
// ones included (the decoder reports those).
std::string png_palette_problem(const uint8_t* data, size_t size);

}  // namespace idiff
