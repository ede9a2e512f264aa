#include "idiff/io/npz.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/io/npy_format.h"
#include "idiff/io/tensor_convert.h"

#include <ATen/ATen.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace idiff {

TensorMap read_npz(const std::string& path) {
  TensorMap out;
  for (auto& [key, raw] : read_npz_arrays(ZipReader::open_file(path)))
    out.insert(key, to_tensor(raw));
  return out;
}

void write_npz(const std::string& path, const TensorMap& arrays) {
  NamedRawTensors raws;
  for (const auto& [key, t] : arrays)
    raws.emplace_back(key, to_raw(t, str(path, ": array '", key, "'")));
  write_npz_arrays(path, raws);
}

std::string npz_bytes(const TensorMap& arrays) {
  // libzip writes archives to files: the npz goes to a temporary file of our own naming
  // (mkstemp in the system's temporary folder), is read back and removed.
  const char* dir = std::getenv("TMPDIR");
  std::string path =
      std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/idiff-npz-XXXXXX";
  const int fd = ::mkstemp(path.data());
  IDIFF_REQUIRE(fd >= 0, FileError, path, ": cannot create a temporary file for an npz");
  ::close(fd);
  std::string bytes;
  try {
    write_npz(path, arrays);
    const std::vector<uint8_t> raw = read_regular_file(path, uint64_t{1} << 40, "npz");
    bytes.assign(raw.begin(), raw.end());
  } catch (...) {
    std::remove(path.c_str());
    throw;
  }
  std::remove(path.c_str());
  return bytes;
}

at::Tensor read_npy(const std::string& path) {
  require_regular_file(path, "file");  // a FIFO or a device would block or never end
  std::ifstream in(path, std::ios::binary);
  IDIFF_REQUIRE(in.is_open(), FileError, path, ": cannot open");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  auto bytes = RawStorage::allocate(size);
  in.read(reinterpret_cast<char*>(bytes->mutable_data()), static_cast<std::streamsize>(size));
  IDIFF_REQUIRE(in.good() || size == 0, FileError, path, ": cannot read");
  return to_tensor(parse_npy(std::move(bytes), path));
}

void write_npy(const std::string& path, const at::Tensor& array) {
  write_npy_array(path, to_raw(array, path));
}

}  // namespace idiff
