// IDX files and Fashion-MNIST (see idx_dataset.h).
#include "idiff/data/idx_dataset.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/data/image_resize.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace fs = std::filesystem;

namespace idiff {
namespace {

constexpr int64_t kMaxIdxBytes = int64_t(1) << 34;  // 16 GiB: a sanity bound on the header

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

std::string gz_message(gzFile f) {
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  return errnum == Z_OK ? "unexpected end of file" : msg;
}

// Reads exactly n bytes; false at a clean or unclean end of data (message in *why).
bool gz_read_exact(gzFile f, uint8_t* dst, int64_t n, std::string* why) {
  while (n > 0) {
    const unsigned chunk = unsigned(std::min<int64_t>(n, int64_t(1) << 30));
    const int got = gzread(f, dst, chunk);
    if (got <= 0) {
      *why = gz_message(f);
      return false;
    }
    dst += got;
    n -= got;
  }
  return true;
}

bool file_exists(const std::string& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// "x" or "x.gz", whichever exists ("" when neither).
std::string with_optional_gz(const std::string& p) {
  if (file_exists(p)) return p;
  if (file_exists(p + ".gz")) return p + ".gz";
  return "";
}

std::string idx_images_in_folder(const std::string& dir) {
  for (const char* name : {"train-images-idx3-ubyte", "train-images.idx3-ubyte"}) {
    const std::string p = with_optional_gz((fs::path(dir) / name).string());
    if (!p.empty()) return p;
  }
  return "";
}

bool looks_like_idx_images(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name.find("images-idx3-ubyte") != std::string::npos ||
         name.find("images.idx3-ubyte") != std::string::npos;
}

}  // namespace

IdxArray read_idx_file(const std::string& path, int expected_ndims) {
  require_regular_file(path, "IDX file");  // a FIFO or a device would block or never end
  GzFile f(gzopen(path.c_str(), "rb"));
  IDIFF_REQUIRE(f, FileError, "cannot open IDX file ", path, ": ", std::strerror(errno));
  std::string why;
  uint8_t magic[4];
  IDIFF_REQUIRE(gz_read_exact(f.get(), magic, 4, &why), FileError, "IDX file ", path,
                " is too short for its header: ", why);
  IDIFF_REQUIRE(
      magic[0] == 0 && magic[1] == 0, FileError, "IDX file ", path,
      " has a bad magic number (expected 0x0000 08 0", expected_ndims, ", found 0x", std::hex,
      (unsigned(magic[0]) << 24 | unsigned(magic[1]) << 16 | unsigned(magic[2]) << 8 | magic[3]),
      ")");
  IDIFF_REQUIRE(magic[2] == 0x08, FileError, "IDX file ", path, " holds element type 0x", std::hex,
                unsigned(magic[2]), "; only unsigned bytes (0x08) are supported");
  IDIFF_REQUIRE(magic[3] == expected_ndims, FileError, "IDX file ", path, " has ",
                unsigned(magic[3]), " dimensions, expected ", expected_ndims);
  IdxArray arr;
  int64_t total = 1;
  for (int d = 0; d < expected_ndims; ++d) {
    uint8_t b[4];
    IDIFF_REQUIRE(gz_read_exact(f.get(), b, 4, &why), FileError, "IDX file ", path,
                  " is too short for its header: ", why);
    const int64_t n = int64_t(b[0]) << 24 | int64_t(b[1]) << 16 | int64_t(b[2]) << 8 | b[3];
    IDIFF_REQUIRE(n > 0, FileError, "IDX file ", path, " has an empty dimension ", d);
    arr.dims.push_back(n);
    total *= n;
    IDIFF_REQUIRE(total <= kMaxIdxBytes, FileError, "IDX file ", path,
                  " claims an implausible size");
  }
  arr.data.resize(size_t(total));
  IDIFF_REQUIRE(gz_read_exact(f.get(), arr.data.data(), total, &why), FileError, "IDX file ", path,
                " is truncated: its header promises ", total, " bytes of data (", why, ")");
  uint8_t extra;
  IDIFF_REQUIRE(gzread(f.get(), &extra, 1) == 0, FileError, "IDX file ", path,
                " has data after the ", total, " bytes its header promises");
  return arr;
}

std::string find_idx_images(const std::string& data_dir) {
  std::error_code ec;
  if (data_dir == kFashionMnistKeyword && !fs::exists(data_dir, ec))
    return find_fashion_mnist_images();
  if (fs::is_directory(data_dir, ec)) return idx_images_in_folder(data_dir);
  if (fs::is_regular_file(data_dir, ec) && looks_like_idx_images(data_dir)) return data_dir;
  return "";
}

std::string find_fashion_mnist_images(const std::string& dpkg_list,
                                      const std::string& fallback_dir) {
  std::string dir = fallback_dir;
  std::ifstream list(dpkg_list);
  const std::string name = "/train-images-idx3-ubyte.gz";
  for (std::string line; std::getline(list, line);) {
    if (line.size() > name.size() &&
        line.compare(line.size() - name.size(), name.size(), name) == 0) {
      dir = line.substr(0, line.size() - name.size());
      break;
    }
  }
  const std::string images = idx_images_in_folder(dir);
  IDIFF_REQUIRE(!images.empty(), FileError,
                "`data_dir` fashion-mnist: the Fashion-MNIST files are not in ", dir,
                "; install them with `apt-get install dataset-fashion-mnist`");
  return images;
}

std::string idx_labels_path(const std::string& images_path) {
  const fs::path p(images_path);
  std::string name = p.filename().string();
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".gz") == 0) name.resize(name.size() - 3);
  for (auto [from, to] : {std::pair<const char*, const char*>{"images-idx3", "labels-idx1"},
                          {"images.idx3", "labels.idx1"}}) {
    const size_t at = name.find(from);
    if (at == std::string::npos) continue;
    const std::string labels =
        with_optional_gz((p.parent_path() / name.replace(at, std::strlen(from), to)).string());
    IDIFF_REQUIRE(!labels.empty(), FileError, "IDX images ", images_path,
                  " have no labels file beside them (", (p.parent_path() / name).string(),
                  "[.gz])");
    return labels;
  }
  throw FileError(str("IDX images ", images_path,
                      ": cannot derive the labels file name (expected a name with ",
                      "images-idx3-ubyte)"));
}

IdxDataset::IdxDataset(const std::string& images_path, const std::string& labels_path,
                       int64_t resolution)
    : images_path_(images_path), resolution_(resolution) {
  IDIFF_REQUIRE(resolution_ > 0, ConfigError, "`image_size` must be positive, got ", resolution_);
  IdxArray images = read_idx_file(images_path, 3);
  IdxArray labels = read_idx_file(labels_path, 1);
  IDIFF_REQUIRE(images.dims[0] == labels.dims[0], FileError, "IDX files disagree: ", images_path,
                " holds ", images.dims[0], " images but ", labels_path, " holds ", labels.dims[0],
                " labels");
  count_ = images.dims[0];
  rows_ = images.dims[1];
  cols_ = images.dims[2];
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);
  const int max_label = *std::max_element(labels_.begin(), labels_.end());
  for (int c = 0; c <= max_label; ++c) class_names_.push_back(std::to_string(c));
}

int64_t IdxDataset::read(int64_t index, float* out) const {
  TORCH_CHECK(index >= 0 && index < count_, "IdxDataset: index ", index, " of ", count_);
  const uint8_t* src = pixels_.data() + size_t(index) * rows_ * cols_;
  const int64_t r = resolution_;
  if (rows_ == 28 && cols_ == 28 && r == 32) {
    // [28, 28] -> [3, 32, 32], centred, background -1.
    std::fill(out, out + 3 * r * r, -1.0f);
    for (int64_t y = 0; y < 28; ++y) {
      for (int64_t x = 0; x < 28; ++x) {
        const float v = float(src[y * 28 + x]) / 127.5f - 1.0f;
        for (int64_t c = 0; c < 3; ++c) out[(c * r + y + 2) * r + x + 2] = v;
      }
    }
  } else {
    Image8 grey(int(cols_), int(rows_), 1);
    std::copy(src, src + rows_ * cols_, grey.pixels.begin());
    rgb_to_chw_float(reference_resize(std::move(grey), int(r)), out);
  }
  return labels_[size_t(index)];
}

std::string IdxDataset::describe(int64_t index) const {
  return str(images_path_, " image ", index);
}

std::string IdxDataset::summary() const {
  return str(count_, " IDX images ", rows_, "x", cols_, " from ", images_path_, " (",
             class_names_.size(), " classes), at ", resolution_, "x", resolution_,
             rows_ == 28 && cols_ == 28 && resolution_ == 32 ? " (padded)" : "");
}

}  // namespace idiff
