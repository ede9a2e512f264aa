// The safetensors format (https://github.com/huggingface/safetensors, format section)
// without LibTorch: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}} with an optional "__metadata__" object of strings,
// then the raw little-endian tensor bytes. safetensors.h reads and writes at::Tensors
// through this.
#pragma once

#include "idiff/io/raw_tensor.h"

#include <istream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace idiff {

constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;  // the format's own limit

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in header order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

// Reads and validates the header at the start of `in`, a file of `file_size` bytes,
// before anything is allocated for tensors: known dtypes, no duplicate names, shapes
// matching byte ranges, ranges inside the file and not overlapping. Any violation is a
// FileError naming `what` (the file) and the entry.
SafetensorsHeader read_safetensors_header(std::istream& in, uint64_t file_size,
                                          const std::string& what);

// Every tensor of the file (each with its own storage), in header order.
std::vector<std::pair<std::string, RawTensor>> read_safetensors_tensors(std::istream& in,
                                                                        uint64_t file_size,
                                                                        const std::string& what);

// The 8-byte length and the JSON header for `entries` (whose begin/end are filled in here:
// back to back in the given order); padded with spaces so the data starts 8-byte aligned.
std::string make_safetensors_header(std::vector<SafetensorsEntry>& entries,
                                    const std::map<std::string, std::string>& metadata);

}  // namespace idiff
