#include "idiff/io/safetensors.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/io/atomic_file.h"
#include "idiff/io/safetensors_format.h"
#include "idiff/io/tensor_convert.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace idiff {
namespace {

std::ifstream open_binary(const std::string& path, uint64_t* size) {
  require_regular_file(path, "file");  // a FIFO or a device would block or never end
  std::ifstream in(path, std::ios::binary);
  IDIFF_REQUIRE(in.is_open(), FileError, path, ": cannot open (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  *size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  return in;
}

}  // namespace

TensorMap read_safetensors(const std::string& path) {
  uint64_t size = 0;
  std::ifstream in = open_binary(path, &size);
  TensorMap out;
  for (auto& [name, raw] : read_safetensors_tensors(in, size, path))
    out.insert(name, to_tensor(raw));
  return out;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  uint64_t size = 0;
  std::ifstream in = open_binary(path, &size);
  return read_safetensors_header(in, size, path).metadata;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsEntry> entries;
  std::vector<at::Tensor> data;
  for (const auto& [name, t] : tensors) {
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype_of(t.scalar_type(), str(path, ": tensor '", name, "'"));
    e.shape = t.sizes().vec();
    entries.push_back(std::move(e));
    data.push_back(t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous());
  }
  const std::string header = make_safetensors_header(entries, metadata);
  write_file_atomically(path, [&](const std::string& tmp) {
    FileWriter f(tmp);
    f.write(header);
    for (const auto& t : data) f.write(t.data_ptr(), t.nbytes());
    f.close();
  });
}

}  // namespace idiff
