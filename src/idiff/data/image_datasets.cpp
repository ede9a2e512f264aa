// Image folders (the reference's image_datasets.py): listing, labels from names, and
// decoding with stb_image. The implementation of stb_image lives in Debian's libstb
// (linked through pkg-config), so STB_IMAGE_IMPLEMENTATION is not defined here.
#include "idiff/data/image_datasets.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/data/png_decode.h"
#include "idiff/data/png_palette.h"

#include <sys/stat.h>

#include <stb_image.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

namespace fs = std::filesystem;

namespace idiff {
namespace {

bool has_image_extension(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "gif";
}

// A folder's identity: each is descended into once, so a symlink loop (or two links to
// one folder) does not list its images again and again.
using FolderId = std::pair<dev_t, ino_t>;

void list_into(const fs::path& dir, std::vector<std::string>& out, std::set<FolderId>& seen) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !seen.insert({st.st_dev, st.st_ino}).second) return;
  std::error_code ec;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(it->path());
  }
  IDIFF_REQUIRE(!ec, FileError, "cannot list data folder ", dir.string(), ": ", ec.message());
  std::sort(entries.begin(), entries.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  for (const fs::path& p : entries) {
    const bool is_dir = fs::is_directory(p, ec);
    if (!is_dir && has_image_extension(p.filename().string())) {
      out.push_back(p.string());
    } else if (is_dir) {
      list_into(p, out, seen);
    }
  }
}

}  // namespace

std::vector<std::string> list_image_files_recursively(const std::string& data_dir) {
  std::error_code ec;
  IDIFF_REQUIRE(fs::exists(data_dir, ec), FileError, "data folder ", data_dir, " does not exist");
  IDIFF_REQUIRE(fs::is_directory(data_dir, ec), FileError, "data folder ", data_dir,
                " is not a folder");
  std::vector<std::string> out;
  std::set<FolderId> seen;
  list_into(data_dir, out, seen);
  return out;
}

std::string class_name_of(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name.substr(0, name.find('_'));
}

Image8 decode_image_file(const std::string& path, int64_t max_pixels,
                         const std::string& raise_hint) {
  const std::vector<uint8_t> bytes = read_regular_file(path, kMaxImageFileBytes, "image");
  return decode_image_bytes(bytes, "image " + path, max_pixels, raise_hint);
}

Image8 decode_image_bytes(const std::vector<uint8_t>& bytes, const std::string& what,
                          int64_t max_pixels, const std::string& raise_hint) {
  IDIFF_REQUIRE(!bytes.empty(), FileError, "cannot decode ", what, ": it is empty");
  IDIFF_REQUIRE(bytes.size() <= size_t(std::numeric_limits<int>::max()), FileError, what, " holds ",
                bytes.size(), " bytes, more than the decoder takes");
  {
    // The declared size, read from the header before anything is decoded.
    int w = 0, h = 0, c = 0;
    if (stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &c) != 0) {
      const int64_t pixels = int64_t(w) * int64_t(h);
      IDIFF_REQUIRE(pixels <= max_pixels, FileError, what, " is ", w, "x", h, " (", pixels,
                    " pixels), more than the limit of ", max_pixels, " pixels (", raise_hint, ")");
    }
  }
  const std::string palette = png_palette_problem(bytes.data(), bytes.size());
  IDIFF_REQUIRE(palette.empty(), FileError, "cannot decode ", what, ": ", palette,
                " (a broken palette PNG)");
  // PNGs through libpng (png_decode.h says why); JPEG and GIF through stb_image, whose
  // buffers their headers' sizes fix.
  if (is_png(bytes.data(), bytes.size()))
    return decode_png(bytes.data(), bytes.size(), what, max_pixels, raise_hint);
  int w = 0, h = 0, c = 0;
  // stb_image keeps its failure reason thread-locally, so decoding on several threads is safe.
  uint8_t* data = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &c, 0);
  IDIFF_REQUIRE(data != nullptr, FileError, "cannot decode ", what, ": ", stbi_failure_reason());
  Image8 im;
  im.width = w, im.height = h, im.channels = c;
  im.pixels.assign(data, data + size_t(w) * h * c);
  stbi_image_free(data);
  IDIFF_REQUIRE(w > 0 && h > 0 && c >= 1 && c <= 4, FileError, "cannot decode ", what,
                ": unsupported size ", w, "x", h, "x", c);
  return im;
}

ImageFolderDataset::ImageFolderDataset(std::string data_dir, int64_t resolution, int64_t max_pixels)
    : data_dir_(std::move(data_dir)), resolution_(resolution), max_pixels_(max_pixels) {
  IDIFF_REQUIRE(resolution_ > 0, ConfigError, "`image_size` must be positive, got ", resolution_);
  files_ = list_image_files_recursively(data_dir_);
  IDIFF_REQUIRE(
      !files_.empty(), FileError, "data folder ", data_dir_,
      " holds no images (.jpg, .jpeg, .png or .gif, searched recursively) and no IDX files "
      "(train-images-idx3-ubyte[.gz])");
  // Sorted unique names -> indices, over the whole list before sharding, as the reference.
  std::vector<std::string> names;
  names.reserve(files_.size());
  for (const std::string& f : files_) names.push_back(class_name_of(f));
  const std::set<std::string> unique(names.begin(), names.end());
  class_names_.assign(unique.begin(), unique.end());
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < class_names_.size(); ++i) index[class_names_[i]] = int64_t(i);
  labels_.reserve(names.size());
  for (const std::string& n : names) labels_.push_back(index[n]);
}

int64_t ImageFolderDataset::read(int64_t index, float* out) const {
  TORCH_CHECK(index >= 0 && index < size(), "ImageFolderDataset: index ", index, " of ", size());
  const Image8 rgb = reference_resize(decode_image_file(files_[index], max_pixels_),
                                      int(resolution_), "image " + files_[index]);
  rgb_to_chw_float(rgb, out);
  return labels_[index];
}

std::string ImageFolderDataset::describe(int64_t index) const {
  return files_.at(size_t(index));
}

std::string ImageFolderDataset::summary() const {
  return str(files_.size(), " images in ", data_dir_, " (", class_names_.size(),
             " classes by name), at ", resolution_, "x", resolution_);
}

}  // namespace idiff
