#include "idiff/io/file_format.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace idiff {

FileFormat sniff_format(const uint8_t* head, size_t n, uint64_t file_size) {
  if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return FileFormat::Zip;
  // An empty zip (no records) starts with the end-of-directory record.
  if (n >= 4 && std::memcmp(head, "PK\x05\x06", 4) == 0) return FileFormat::Zip;
  if (n >= 6 && std::memcmp(head, "\x93NUMPY", 6) == 0) return FileFormat::Npy;
  // Legacy torch.save: a bare pickle stream (the protocol opcode first).
  if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) return FileFormat::LegacyTorch;
  if (n >= 9) {
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | head[i];
    if (head[8] == '{' && header_len >= 2 && header_len <= file_size - 8)
      return FileFormat::Safetensors;
  }
  return FileFormat::Unknown;
}

std::string read_file_head(const std::string& path, uint64_t* file_size) {
  require_regular_file(path, "file");  // a FIFO or a device would block or never end
  std::ifstream in(path, std::ios::binary);
  IDIFF_REQUIRE(in.is_open(), FileError, path, ": cannot open (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  std::string head(static_cast<size_t>(std::min<uint64_t>(size, 16)), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  IDIFF_REQUIRE(in.good() || head.empty(), FileError, path, ": cannot read");
  if (file_size) *file_size = size;
  return head;
}

}  // namespace idiff
