// numpy's .npy and .npz files (numpy/lib/format.py; np.save, np.savez) without LibTorch.
// An .npy file is the magic "\x93NUMPY", a version, a header that is a Python dict
// literal {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } and the raw
// array; an .npz is a zip of .npy records named <key>.npy. The reference's sample files
// are npz with arr_0 (uint8 NHWC images) and arr_1 (int64 labels).
#pragma once

#include "idiff/io/zip_archive.h"

#include <string>
#include <utility>
#include <vector>

namespace idiff {

using NamedRawTensors = std::vector<std::pair<std::string, RawTensor>>;

struct NpyHeader {
  DType dtype{};
  std::vector<int64_t> shape;
  bool fortran_order = false;
  size_t data_start = 0;    // offset of the array's first byte
  uint64_t data_bytes = 0;  // numel * element size
};

// The magic, version and header dict of an .npy whose first `n` bytes are at `p` (the
// header must be complete within them). FileError naming `what` as parse_npy does.
NpyHeader parse_npy_header(const uint8_t* p, size_t n, const std::string& what);
// Bytes of magic + version + header (the array's offset) from the first 12 bytes of an
// .npy; 0 when they are not an .npy's.
size_t npy_header_length(const uint8_t* p, size_t n);

// Parses an .npy held in `bytes` (a file or an npz record). The result views `bytes`
// (Fortran-ordered arrays as transposed strides). FileError naming `what` for a bad
// magic or header, unsupported dtypes (structured, big-endian, object) and a data size
// that does not match the shape.
RawTensor parse_npy(std::shared_ptr<const RawStorage> bytes, const std::string& what);

// The .npy header (version 1.0, padded so the data starts 64-byte aligned) for a
// C-ordered array. FileError for BF16, which numpy does not have.
std::string make_npy_header(DType dtype, const std::vector<int64_t>& shape);

// Every <key>.npy record of an npz, in archive order, keyed without ".npy".
NamedRawTensors read_npz_arrays(const ZipReader& zip);

// np.savez: one stored <key>.npy record per array; written atomically.
void write_npz_arrays(const std::string& path, const NamedRawTensors& arrays);

// np.save: one array, written atomically.
void write_npy_array(const std::string& path, const RawTensor& array);

}  // namespace idiff
