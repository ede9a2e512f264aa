// One array of an .npz read a few rows (leading-dimension slices) at a time, so that a
// file of 50,000 images is scored without holding all of them: the record is streamed
// through libzip (stored or deflated, as np.savez and np.savez_compressed write it).
#pragma once

#include "idiff/io/dtype.h"
#include "idiff/io/zip_archive.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace idiff {

class NpzArrayStream {
 public:
  // Opens `key`.npy of the npz at `path`. FileError naming the file when it is not an
  // npz, lacks the key, has a bad header, is Fortran-ordered or has no dimensions.
  NpzArrayStream(const std::string& path, const std::string& key);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rows() const { return shape_[0]; }
  int64_t rows_left() const { return shape_[0] - next_row_; }
  // The next min(n, rows_left()) rows as a CPU tensor [n, shape[1:]...].
  at::Tensor read_rows(int64_t n);

 private:
  ZipReader zip_;
  ZipRecordStream stream_;
  std::string what_;
  DType dtype_{};
  std::vector<int64_t> shape_;
  int64_t row_bytes_ = 0;
  int64_t next_row_ = 0;
};

// Names of the arrays of an npz (keys without ".npy"), in archive order.
std::vector<std::string> npz_keys(const std::string& path);

}  // namespace idiff
