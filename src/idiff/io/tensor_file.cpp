#include "idiff/io/tensor_file.h"

#include "idiff/common/error.h"
#include "idiff/io/file_format.h"
#include "idiff/io/npz.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/pt_file.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_convert.h"

#include <algorithm>
#include <cctype>

namespace idiff {

TensorFileKind tensor_file_kind(const std::string& path) {
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto ends = [&](const char* ext) {
    const std::string e = ext;
    return lower.size() > e.size() && lower.compare(lower.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".pt") || ends(".pth")) return TensorFileKind::Pt;
  if (ends(".safetensors")) return TensorFileKind::Safetensors;
  if (ends(".npz")) return TensorFileKind::Npz;
  throw FileError(
      str(path, ": unknown tensor file extension (expected .pt, .pth, .safetensors or .npz)"));
}

const char* tensor_file_kind_name(TensorFileKind kind) {
  switch (kind) {
    case TensorFileKind::Pt:
      return "PyTorch .pt";
    case TensorFileKind::Safetensors:
      return "safetensors";
    case TensorFileKind::Npz:
      return "numpy .npz";
  }
  return "?";
}

TensorFileKind detect_tensor_file(const std::string& path) {
  uint64_t size = 0;
  const std::string head = read_file_head(path, &size);
  switch (sniff_format(reinterpret_cast<const uint8_t*>(head.data()), head.size(), size)) {
    case FileFormat::Zip: {
      const ZipReader zip = ZipReader::open_file(path);
      for (const auto& name : zip.names()) {
        if (name.size() > 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0)
          return TensorFileKind::Pt;
      }
      for (const auto& name : zip.names()) {
        if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0)
          return TensorFileKind::Npz;
      }
      throw FileError(
          str(path, ": a zip archive that is neither a torch.save file (no data.pkl) nor an npz"));
    }
    case FileFormat::Safetensors:
      return TensorFileKind::Safetensors;
    case FileFormat::LegacyTorch:
      return TensorFileKind::Pt;  // read_pt reads both torch.save formats
    case FileFormat::Npy:
      throw FileError(
          str(path, ": a single .npy array; idiff's tensor files are .pt, .safetensors or .npz"));
    case FileFormat::Unknown:
      break;
  }
  throw FileError(str(path, ": not a tensor file idiff knows (", size,
                      " bytes; expected a torch.save zip, safetensors or npz)"));
}

TensorMap load_tensor_file(const std::string& path) {
  switch (detect_tensor_file(path)) {
    case TensorFileKind::Pt:
      return read_pt_state_dict(path);
    case TensorFileKind::Safetensors:
      return read_safetensors(path);
    case TensorFileKind::Npz:
      return read_npz(path);
  }
  throw FileError(str(path, ": unknown format"));
}

at::Tensor load_single_tensor(const std::string& path) {
  if (detect_tensor_file(path) == TensorFileKind::Pt) {
    const PickleValue v = read_pt(path);
    if (v.is_tensor()) return to_tensor(v);
    const TensorMap m = tensors_of(v, path);
    IDIFF_REQUIRE(m.size() >= 1, FileError, path, ": holds no tensor");
    return m.entries().front().second;
  }
  const TensorMap m = load_tensor_file(path);
  IDIFF_REQUIRE(m.size() >= 1, FileError, path, ": holds no tensor");
  return m.entries().front().second;
}

void save_tensor_file(const std::string& path, const TensorMap& tensors) {
  switch (tensor_file_kind(path)) {
    case TensorFileKind::Pt:
      write_pt(path, tensors);
      return;
    case TensorFileKind::Safetensors:
      write_safetensors(path, tensors);
      return;
    case TensorFileKind::Npz:
      write_npz(path, tensors);
      return;
  }
}

}  // namespace idiff
