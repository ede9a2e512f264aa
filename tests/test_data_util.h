// Helpers of the data tests (test_data*.cpp): writing images with stb_image_write (its
// implementation comes with Debian's libstb, linked into idiff_lib) and IDX files with
// zlib, and a synthetic in-memory dataset for the loader tests.
#pragma once

#include "idiff/common/error.h"
#include "idiff/data/dataset.h"
#include "idiff/data/image_resize.h"

#include <stb/stb_image_write.h>
#include <zlib.h>

#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace idiff::test {

inline void write_png(const std::string& path, const Image8& im) {
  if (!stbi_write_png(path.c_str(), im.width, im.height, im.channels, im.pixels.data(),
                      im.width * im.channels)) {
    throw std::runtime_error("stbi_write_png failed: " + path);
  }
}

inline void write_jpg(const std::string& path, const Image8& im, int quality = 95) {
  if (!stbi_write_jpg(path.c_str(), im.width, im.height, im.channels, im.pixels.data(), quality)) {
    throw std::runtime_error("stbi_write_jpg failed: " + path);
  }
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// A w x h image with c channels, pixel (x, y, b) = (x * 7 + y * 13 + b * 50 + seed) % 256.
inline Image8 pattern_image(int w, int h, int c, int seed = 0) {
  Image8 im(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int b = 0; b < c; ++b)
        im.row(y)[x * c + b] = uint8_t((x * 7 + y * 13 + b * 50 + seed) % 256);
  return im;
}

// An IDX file of unsigned bytes: header (magic 0x0000 08 <ndims>, big-endian dims) + data.
inline std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data,
                             uint8_t type = 0x08) {
  std::string s = {0, 0, char(type), char(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(char((d >> shift) & 0xff));
  }
  s.append(data.begin(), data.end());
  return s;
}

inline void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("gzopen failed: " + path);
  gzwrite(f, bytes.data(), unsigned(bytes.size()));
  gzclose(f);
}

// n items; item i is the constant image i (every value float(i)) with label i % classes;
// the items in `bad` throw FileError as an unreadable image would.
class FakeDataset : public Dataset {
 public:
  FakeDataset(int64_t n, int64_t resolution = 2, std::set<int64_t> bad = {}, int64_t classes = 3)
      : n_(n), r_(resolution), bad_(std::move(bad)) {
    for (int64_t c = 0; c < classes; ++c) names_.push_back(std::to_string(c));
  }
  int64_t size() const override { return n_; }
  int64_t resolution() const override { return r_; }
  int64_t read(int64_t index, float* out) const override {
    if (bad_.count(index)) throw FileError(describe(index) + ": corrupt");
    for (int64_t i = 0; i < 3 * r_ * r_; ++i) out[i] = float(index);
    return index % num_classes();
  }
  bool has_labels() const override { return labelled_; }
  const std::vector<std::string>& class_names() const override { return names_; }
  std::string describe(int64_t index) const override {
    return "fake" + std::to_string(index) + ".png";
  }
  std::string summary() const override { return "fake data"; }
  bool labelled_ = true;

 private:
  int64_t n_, r_;
  std::set<int64_t> bad_;
  std::vector<std::string> names_;
};

}  // namespace idiff::test
