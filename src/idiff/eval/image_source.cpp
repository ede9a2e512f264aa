#include "idiff/eval/image_source.h"

#include "idiff/common/error.h"
#include "idiff/data/image_datasets.h"
#include "idiff/eval/inception.h"
#include "idiff/io/npz_stream.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <vector>

namespace idiff {
namespace {

// uint8 [B, H, W, C] -> float [B, 3, H, W] in [0, 1].
at::Tensor to_float_rgb(const at::Tensor& nhwc) {
  at::Tensor x = nhwc.permute({0, 3, 1, 2}).to(at::kFloat).div_(255);
  return x.size(1) == 1 ? x.expand({-1, 3, -1, -1}).contiguous() : x.contiguous();
}

class NpzImages : public ImageSource {
 public:
  NpzImages(const std::string& path, const std::string& flag)
      : path_(path), stream_(path, "arr_0") {
    const auto& s = stream_.shape();
    IDIFF_REQUIRE(
        stream_.dtype() == DType::U8 && s.size() == 4 && (s[3] == 3 || s[3] == 1) && s[1] > 0 &&
            s[2] > 0,
        FileError, flag, " ", path,
        ": arr_0 must be uint8 images [N, H, W, 3] or grey [N, H, W, 1] (a sample file), found ",
        dtype_name(stream_.dtype()), " ", shape_string(s));
  }
  int64_t size() const override { return stream_.rows(); }
  at::Tensor next(int64_t n) override { return to_float_rgb(stream_.read_rows(n)); }
  std::string describe() const override {
    const auto& s = stream_.shape();
    return str(path_, " (", s[0], " images of ", s[1], "x", s[2], ")");
  }

 private:
  std::string path_;
  NpzArrayStream stream_;
};

class FolderImages : public ImageSource {
 public:
  FolderImages(const std::string& path, const std::string& flag)
      : path_(path), files_(list_image_files_recursively(path)) {
    IDIFF_REQUIRE(!files_.empty(), FileError, flag, " ", path,
                  ": no images (.jpg, .jpeg, .png, .gif) in the folder");
  }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  at::Tensor next(int64_t n) override {
    std::vector<at::Tensor> images;
    for (; n > 0 && next_ < files_.size(); --n, ++next_) {
      const Image8 img =
          decode_image_file(files_[next_], kDefaultMaxImagePixels, "resize it first");
      at::Tensor t = at::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                   {1, img.height, img.width, img.channels}, at::kByte);
      // PIL's convert("RGB"): grey (+ alpha) repeated, alpha dropped.
      t = img.channels <= 2 ? t.narrow(3, 0, 1) : t.narrow(3, 0, 3);
      at::Tensor x = to_float_rgb(t);
      if (img.height != 299 || img.width != 299) x = inception_resize(x);
      images.push_back(x);
    }
    return images.empty() ? at::Tensor() : at::cat(images);
  }
  std::string describe() const override { return str(path_, " (", files_.size(), " images)"); }

 private:
  std::string path_;
  std::vector<std::string> files_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<ImageSource> ImageSource::open(const std::string& path, const std::string& flag) {
  IDIFF_REQUIRE(std::filesystem::exists(path), FileError, flag, " ", path,
                ": no such file or folder");
  if (std::filesystem::is_directory(path)) return std::make_unique<FolderImages>(path, flag);
  try {
    return std::make_unique<NpzImages>(path, flag);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), " (", flag,
                        " takes an .npz sample file with arr_0, a statistics .npz with mu and "
                        "sigma, or a folder of images)"));
  }
}

}  // namespace idiff
