// Helpers of the training and sampling tests: a tiny model configuration that trains in
// a fraction of a second per step on the CPU, a small generated image folder, and reading
// progress.csv and the bits/dim that `idiff nll` prints.
#pragma once

#include "test_data_util.h"
#include "test_util.h"

#include "idiff/common/strings.h"
#include "idiff/config.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

namespace idiff::test {

// 32x32, 32 channels, one res block, attention only in the middle, learned sigma.
inline ModelConfig tiny_model() {
  ModelConfig m;
  m.image_size = 32;
  m.num_channels = 32;
  m.num_res_blocks = 1;
  m.attention_resolutions = "";
  m.learn_sigma = true;
  return m;
}

inline DiffusionConfig tiny_diffusion() {
  DiffusionConfig d;
  d.learn_sigma = true;
  return d;
}

// The same settings as command-line flags.
inline std::vector<std::string> tiny_flags() {
  return {"--image_size",     "32",  "--num_channels",          "32",
          "--num_res_blocks", "1",   "--attention_resolutions", "",
          "--learn_sigma",    "True"};
}

// `n` 32x32 PNGs in `dir`, two classes ("disc_", "ring_"): smooth shapes the model can
// learn quickly.
inline void write_shape_folder(const std::string& dir, int n = 12) {
  for (int i = 0; i < n; ++i) {
    const bool ring = i % 2;
    Image8 im(32, 32, 3);
    const float cx = 12.0f + (i % 5), cy = 14.0f + (i % 3), r = 6.0f + (i % 4);
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        const float d = std::sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy));
        const bool on = ring ? std::abs(d - r) < 2.0f : d < r;
        for (int c = 0; c < 3; ++c) {
          im.row(y)[x * 3 + c] = on ? uint8_t(200 + 20 * c) : uint8_t(30 + 10 * c);
        }
      }
    }
    char name[64];
    std::snprintf(name, sizeof(name), "/%s_%02d.png", ring ? "ring" : "disc", i);
    write_png(dir + name, im);
  }
}

// Whether two tensor files hold the same names and bitwise equal tensors.
inline bool same_file_tensors(const std::string& a, const std::string& b) {
  const TensorMap x = load_tensor_file(a), y = load_tensor_file(b);
  if (x.size() != y.size()) return false;
  for (const auto& [key, t] : x) {
    if (!y.contains(key) || !at::equal(t, y.at(key))) return false;
  }
  return true;
}

// A 16x16 consistency_models-style model small enough for cm-train tests.
inline std::vector<std::string> small_karras_flags() {
  return {"--image_size=16",        "--num_channels=32",
          "--num_res_blocks=1",     "--attention_resolutions=8",
          "--num_head_channels=16", "--channel_mult=1,2",
          "--device=cpu",           "--num_workers=1"};
}

// The values of `column` in a progress.csv, one per logged row (NaN where a row has none).
inline std::vector<double> progress_column(const std::string& csv, const std::string& column) {
  std::ifstream in(csv);
  std::string header, line;
  std::getline(in, header);
  const auto cols = split(header, ',');
  const auto col = static_cast<size_t>(std::find(cols.begin(), cols.end(), column) - cols.begin());
  std::vector<double> out;
  while (std::getline(in, line)) {
    const auto vals = split(line, ',');
    out.push_back(col < vals.size() && !vals[col].empty() ? std::stod(vals[col]) : std::nan(""));
  }
  return out;
}

// The bits/dim that `idiff nll` printed last.
inline double bpd_of(const std::string& out) {
  const auto pos = out.rfind("bits/dim over ");
  EXPECT_NE(pos, std::string::npos) << out;
  if (pos == std::string::npos) return std::nan("");
  return std::stod(out.substr(out.find(": ", pos) + 2));
}

template <typename... Args>
std::vector<std::string> cat_args(std::vector<std::string> a, const Args&... rest) {
  (a.insert(a.end(), rest.begin(), rest.end()), ...);
  return a;
}

}  // namespace idiff::test
