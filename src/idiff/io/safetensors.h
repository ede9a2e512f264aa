// safetensors files (https://github.com/huggingface/safetensors, format section): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with an
// optional "__metadata__" object of strings, then the raw little-endian tensor bytes.
#pragma once

#include "idiff/io/tensor_map.h"

#include <map>
#include <string>

namespace idiff {

// Reads every tensor (CPU, contiguous) in header order. The header is validated before
// anything is allocated: known dtypes, shapes matching byte ranges, ranges inside the
// file and not overlapping. Any violation is a FileError naming the file and the entry.
TensorMap read_safetensors(const std::string& path);

// The "__metadata__" strings of a safetensors file (empty when absent).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

}  // namespace idiff
