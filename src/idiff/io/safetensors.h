// safetensors files with at::Tensors (the format and its validation: safetensors_format.h).
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

// Writes the tensors (made contiguous, moved to the CPU) in map order, atomically.
// The default metadata {"format": "pt"} is what Hugging Face loaders look for.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace idiff
