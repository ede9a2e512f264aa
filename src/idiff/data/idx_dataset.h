// IDX files (the MNIST format: big-endian header, magic 0x0000 08 <ndims>, then uint8
// data), gzipped or plain, read with zlib's gz* functions, which pass plain files through.
// Used for MNIST-style data sets, above all Fashion-MNIST as Debian's
// dataset-fashion-mnist package installs it. Not in the reference, which reads only
// image folders; an addition so the demo trains without converting files.
//
// Images are grey and become 3 equal channels. 28x28 images at --image_size 32 are
// padded by 2 pixels on each side with the background value -1 (black, as the digits'
// and clothes' background), the usual way to give MNIST-like data a power-of-two size;
// any other size goes through the reference's resize (image_resize.h: box halvings,
// bicubic, centre crop), so the tensors equal those of the same images saved as PNGs in
// a folder.
#pragma once

#include "idiff/data/dataset.h"

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// The contents of one IDX file of unsigned bytes.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Reads an IDX file (gzipped or not) whose element type is unsigned byte (0x08) and whose
// dimension count is `expected_ndims`. Bad magic, another type or dimension count, a
// zero dimension, truncated data or trailing bytes are FileErrors naming the file.
IdxArray read_idx_file(const std::string& path, int expected_ndims);

// The keyword that names Debian's Fashion-MNIST package as --data_dir.
constexpr const char* kFashionMnistKeyword = "fashion-mnist";

// Where IDX files are, for a --data_dir value, or "" when it names no IDX data:
//  - "fashion-mnist" (when no such file or folder exists here): the folder of
//    train-images-idx3-ubyte.gz in dataset-fashion-mnist's file list
//    (/var/lib/dpkg/info/dataset-fashion-mnist.list, what `dpkg -L` prints), else
//    /usr/share/datasets/fashion-mnist; a FileError asking to install the package when
//    the files are absent;
//  - a folder holding train-images-idx3-ubyte (or train-images.idx3-ubyte), optionally
//    .gz: the train split;
//  - an images file itself (…images-idx3-ubyte[.gz], e.g. the t10k split).
// Returns the images file; its labels file is found by idx_labels_path().
std::string find_idx_images(const std::string& data_dir);

// Fashion-MNIST's train images file as installed by dataset-fashion-mnist: the folder
// `dpkg_list` (the package's dpkg file list) names, else `fallback_dir`. A FileError
// asking to `apt-get install dataset-fashion-mnist` when the file is in neither.
std::string find_fashion_mnist_images(
    const std::string& dpkg_list = "/var/lib/dpkg/info/dataset-fashion-mnist.list",
    const std::string& fallback_dir = "/usr/share/datasets/fashion-mnist");

// The labels file beside an images file: "images-idx3" / "images.idx3" replaced by
// "labels-idx1" / "labels.idx1", with or without .gz. FileError when there is none.
std::string idx_labels_path(const std::string& images_path);

class IdxDataset : public Dataset {
 public:
  // Reads the images and labels files whole into memory (Fashion-MNIST train: 47 MB).
  IdxDataset(const std::string& images_path, const std::string& labels_path, int64_t resolution);

  int64_t size() const override { return count_; }
  int64_t resolution() const override { return resolution_; }
  int64_t read(int64_t index, float* out) const override;
  bool has_labels() const override { return true; }
  const std::vector<std::string>& class_names() const override { return class_names_; }
  std::string describe(int64_t index) const override;
  std::string summary() const override;

  int64_t image_height() const { return rows_; }
  int64_t image_width() const { return cols_; }
  const std::vector<uint8_t>& labels() const { return labels_; }

 private:
  std::string images_path_;
  int64_t resolution_;
  int64_t count_ = 0, rows_ = 0, cols_ = 0;
  std::vector<uint8_t> pixels_;  // [count][rows][cols]
  std::vector<uint8_t> labels_;
  std::vector<std::string> class_names_;  // "0".."K-1", K = largest label + 1
};

}  // namespace idiff
