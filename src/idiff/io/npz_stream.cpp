#include "idiff/io/npz_stream.h"

#include "idiff/common/error.h"
#include "idiff/io/npy_format.h"
#include "idiff/io/tensor_convert.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace idiff {
namespace {

ZipRecordStream open_array(const ZipReader& zip, const std::string& path, const std::string& key) {
  IDIFF_REQUIRE(zip.contains(key + ".npy"), FileError, path, ": the npz has no array '", key, "'");
  return zip.open_stream(key + ".npy");
}

}  // namespace

NpzArrayStream::NpzArrayStream(const std::string& path, const std::string& key)
    : zip_(ZipReader::open_file(path)),
      stream_(open_array(zip_, path, key)),
      what_(str(path, ": array '", key, "'")) {
  // The header: 12 bytes say its length (at most 64 KiB, as parse_npy_header allows).
  std::vector<uint8_t> head(12);
  IDIFF_REQUIRE(stream_.size() >= head.size(), FileError, what_, ": not an .npy array");
  stream_.read(head.data(), head.size());
  const size_t header_len = npy_header_length(head.data(), head.size());
  IDIFF_REQUIRE(
      header_len >= head.size() && header_len <= 65536 + 12 && header_len <= stream_.size(),
      FileError, what_, ": not an .npy array (bad magic or header length)");
  head.resize(header_len);
  stream_.read(head.data() + 12, header_len - 12);
  const NpyHeader h = parse_npy_header(head.data(), head.size(), what_);
  IDIFF_REQUIRE(!h.fortran_order, FileError, what_,
                ": Fortran-ordered arrays are not streamed (save it C-ordered)");
  IDIFF_REQUIRE(!h.shape.empty(), FileError, what_, ": a 0-d array has no rows");
  IDIFF_REQUIRE(stream_.size() - header_len == h.data_bytes, FileError, what_, ": shape ",
                shape_string(h.shape), " needs ", h.data_bytes, " bytes, the record holds ",
                stream_.size() - header_len);
  dtype_ = h.dtype;
  shape_ = h.shape;
  row_bytes_ = shape_[0] > 0 ? static_cast<int64_t>(h.data_bytes / shape_[0]) : 0;
}

at::Tensor NpzArrayStream::read_rows(int64_t n) {
  n = std::max<int64_t>(0, std::min(n, rows_left()));
  std::vector<int64_t> sizes = shape_;
  sizes[0] = n;
  at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(to_scalar_type(dtype_)));
  stream_.read(out.data_ptr(), static_cast<uint64_t>(n * row_bytes_));
  next_row_ += n;
  return out;
}

std::vector<std::string> npz_keys(const std::string& path) {
  std::vector<std::string> keys;
  const ZipReader zip = ZipReader::open_file(path);
  for (const auto& name : zip.names()) {
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0)
      keys.push_back(name.substr(0, name.size() - 4));
  }
  return keys;
}

}  // namespace idiff
