// One entry point for tensor files: the format is recognised by content when reading
// (file_format.h) and by extension when writing. Writing is atomic (atomic_file.h): a
// checkpoint is never left half-written.
//
//   .pt / .pth      torch.save (zip, or the legacy format) with a flat state dict (pt_file.h)
//   .safetensors    safetensors (safetensors.h)
//   .npz            numpy archive (npz.h)
#pragma once

#include "idiff/io/tensor_map.h"

#include <string>

namespace idiff {

enum class TensorFileKind { Pt, Safetensors, Npz };

// By extension (case-insensitive); FileError naming the supported ones otherwise.
TensorFileKind tensor_file_kind(const std::string& path);
const char* tensor_file_kind_name(TensorFileKind kind);

// What `path` holds, recognised by its first bytes: a zip with data.pkl or a legacy
// (pre-1.6) torch.save file is a .pt (a flat state dict), a zip of .npy records an npz,
// otherwise safetensors. Anything unrecognised is a FileError that says what was found.
TensorFileKind detect_tensor_file(const std::string& path);
TensorMap load_tensor_file(const std::string& path);
// The one tensor a file holds for a flag that takes "a tensor file": a bare
// torch.save(tensor) .pt, else the first tensor of a state dict, safetensors or npz file.
// A file without one is a FileError naming it.
at::Tensor load_single_tensor(const std::string& path);

void save_tensor_file(const std::string& path, const TensorMap& tensors);

}  // namespace idiff
