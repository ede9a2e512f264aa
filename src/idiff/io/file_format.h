// Telling tensor files apart by their first bytes (not their names): zip archives
// (torch.save since PyTorch 1.6, npz), numpy .npy, safetensors, and the legacy non-zip
// torch.save format (pt_legacy.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace idiff {

enum class FileFormat { Zip, Npy, Safetensors, LegacyTorch, Unknown };

// `head` holds the first min(16, file size) bytes of a file of `file_size` bytes.
FileFormat sniff_format(const uint8_t* head, size_t n, uint64_t file_size);

// The first bytes of a file (up to 16), for sniff_format; FileError when unreadable.
std::string read_file_head(const std::string& path, uint64_t* file_size);

}  // namespace idiff
