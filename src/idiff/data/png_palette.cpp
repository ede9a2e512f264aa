#include "idiff/data/png_palette.h"

#include "idiff/common/error.h"

#include <zlib.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace idiff {
namespace {

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

// The Paeth predictor (PNG spec, 9.4).
int paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// Inflates `in` into exactly `out.size()` bytes; false when the stream is short or broken.
bool inflate_exact(const std::vector<uint8_t>& in, std::vector<uint8_t>& out) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return false;
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int rc = Z_OK;
  while (rc == Z_OK && z.avail_out > 0) rc = inflate(&z, Z_NO_FLUSH);
  inflateEnd(&z);
  return z.avail_out == 0;
}

struct Pass {
  int x0, y0, dx, dy;
};
constexpr std::array<Pass, 7> kAdam7{{{0, 0, 8, 8},
                                      {4, 0, 8, 8},
                                      {0, 4, 4, 8},
                                      {2, 0, 4, 4},
                                      {0, 2, 2, 4},
                                      {1, 0, 2, 2},
                                      {0, 1, 1, 2}}};

}  // namespace

std::string png_palette_problem(const uint8_t* data, size_t size) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 || std::memcmp(data, kSignature, 8) != 0) return "";
  uint32_t width = 0, height = 0, palette = 0;
  int depth = 0, color = -1, interlace = 0;
  std::vector<uint8_t> idat;
  // Chunks: length (4, big-endian), type (4), data, CRC (4).
  for (size_t pos = 8; pos + 8 <= size;) {
    const uint32_t len = be32(data + pos);
    const uint8_t* type = data + pos + 4;
    if (len > size - pos - 8) return "";
    const uint8_t* body = data + pos + 8;
    if (std::memcmp(type, "IHDR", 4) == 0 && len >= 13) {
      width = be32(body), height = be32(body + 4), depth = body[8], color = body[9];
      interlace = body[12];
      if (color != 3) return "";  // not a palette image
    } else if (std::memcmp(type, "PLTE", 4) == 0) {
      palette = len / 3;
    } else if (std::memcmp(type, "IDAT", 4) == 0) {
      idat.insert(idat.end(), body, body + len);
    } else if (std::memcmp(type, "IEND", 4) == 0) {
      break;
    }
    pos += size_t(len) + 12;
  }
  if (color != 3 || palette == 0 || width == 0 || height == 0 || interlace > 1) return "";
  if (depth != 1 && depth != 2 && depth != 4 && depth != 8) return "";
  if (palette >= (1u << depth)) return "";  // every index names an entry
  // The filtered scanlines of every pass: one filter byte + ceil(w * depth / 8) per row.
  // The caller has already bounded width * height (its pixel limit).
  std::vector<Pass> passes;
  if (interlace == 1) {
    passes.assign(kAdam7.begin(), kAdam7.end());
  } else {
    passes.push_back({0, 0, 1, 1});
  }
  size_t total = 0;
  for (const Pass& p : passes) {
    const uint64_t w = width > uint32_t(p.x0) ? (width - p.x0 + p.dx - 1) / p.dx : 0;
    const uint64_t h = height > uint32_t(p.y0) ? (height - p.y0 + p.dy - 1) / p.dy : 0;
    if (w > 0 && h > 0) total += size_t(h * (1 + (w * depth + 7) / 8));
  }
  std::vector<uint8_t> raw(total);
  if (!inflate_exact(idat, raw)) return "";
  size_t at = 0;
  int max_index = -1;
  for (const Pass& p : passes) {
    const size_t w = width > uint32_t(p.x0) ? (width - p.x0 + p.dx - 1) / p.dx : 0;
    const size_t h = height > uint32_t(p.y0) ? (height - p.y0 + p.dy - 1) / p.dy : 0;
    if (w == 0 || h == 0) continue;
    const size_t row_bytes = (w * depth + 7) / 8;
    std::vector<uint8_t> prev(row_bytes, 0), cur(row_bytes);
    for (size_t y = 0; y < h; ++y, at += 1 + row_bytes) {
      const uint8_t filter = raw[at];
      const uint8_t* in = raw.data() + at + 1;
      // Unfilter (PNG spec, 9.2); with at most 8 bits per pixel the filter's left
      // neighbour is the previous byte.
      for (size_t i = 0; i < row_bytes; ++i) {
        const int a = i > 0 ? cur[i - 1] : 0, b = prev[i], c = i > 0 ? prev[i - 1] : 0;
        int pred = 0;
        switch (filter) {
          case 0:
            pred = 0;
            break;
          case 1:
            pred = a;
            break;
          case 2:
            pred = b;
            break;
          case 3:
            pred = (a + b) / 2;
            break;
          case 4:
            pred = paeth(a, b, c);
            break;
          default:
            return "";  // a broken file: the decoder says so
        }
        cur[i] = uint8_t(in[i] + pred);
      }
      for (size_t x = 0; x < w; ++x) {
        const size_t bit = x * depth;
        const int shift = 8 - depth - int(bit % 8);
        const int index = (cur[bit / 8] >> shift) & ((1 << depth) - 1);
        if (index > max_index) max_index = index;
      }
      std::swap(prev, cur);
    }
  }
  if (max_index < int(palette)) return "";
  return str("palette index ", max_index, " is past the palette's ", palette, " entries");
}

}  // namespace idiff
