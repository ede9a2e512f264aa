#include "idiff/io/pt_archive.h"

#include "idiff/common/error.h"
#include "idiff/io/atomic_file.h"
#include "idiff/io/file_format.h"
#include "idiff/io/pickle/pickler.h"
#include "idiff/io/pickle/unpickler.h"
#include "idiff/io/pt_legacy.h"

#include <limits>

namespace idiff {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The folder holding data.pkl: the single "<folder>/data.pkl" record.
std::string find_folder(const ZipReader& zip) {
  std::string folder;
  int found = 0;
  bool torchscript = false;
  for (const auto& name : zip.names()) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      folder = name.substr(0, slash);
      ++found;
    }
    if (ends_with(name, "/constants.pkl") || name.find("/code/") != std::string::npos)
      torchscript = true;
  }
  IDIFF_REQUIRE(found <= 1, FileError, zip.what(), ": holds ", found,
                " data.pkl records; a torch.save file has one");
  IDIFF_REQUIRE(!(found == 0 && torchscript), FileError, zip.what(),
                ": a TorchScript archive (torch.jit.save), not a torch.save file; save the "
                "model's state_dict() with torch.save instead");
  IDIFF_REQUIRE(found == 1, FileError, zip.what(),
                ": a zip archive without a <folder>/data.pkl record, so not a torch.save file");
  return folder;
}

}  // namespace

PickleValue read_pt(const ZipReader& zip) {
  const std::string folder = find_folder(zip);
  const std::string byteorder_record = folder + "/byteorder";
  if (zip.contains(byteorder_record)) {
    const std::string order = zip.read_string(byteorder_record, 16);
    IDIFF_REQUIRE(order == "little", FileError, zip.what(), ": byteorder is '", order.substr(0, 16),
                  "'; only little-endian files are supported");
  }
  const auto pkl = zip.read(folder + "/data.pkl", kMaxPickleBytes);
  const StorageLoader load = [&](const std::string& key, DType dtype,
                                 int64_t numel) -> std::shared_ptr<const RawStorage> {
    const std::string record = folder + "/data/" + key;
    const uint64_t elsize = dtype_size(dtype);
    IDIFF_REQUIRE(
        static_cast<uint64_t>(numel) <= std::numeric_limits<uint64_t>::max() / 16 / elsize,
        FileError, zip.what(), ": storage '", key.substr(0, 64), "' declares ", numel, " elements");
    const uint64_t nbytes = static_cast<uint64_t>(numel) * elsize;
    IDIFF_REQUIRE(zip.contains(record), FileError, zip.what(), ": the pickle names storage '",
                  key.substr(0, 64), "' but there is no record ", record.substr(0, 200));
    const uint64_t have = zip.size_of(record);
    IDIFF_REQUIRE(have == nbytes, FileError, zip.what(), ": storage '", key, "' declares ", numel,
                  " ", dtype_name(dtype), " elements (", nbytes, " bytes) but its record holds ",
                  have, " bytes");
    return zip.read(record, nbytes);
  };
  return unpickle(pkl->data, pkl->nbytes, load, zip.what());
}

PickleValue read_pt(const std::string& path) {
  uint64_t size = 0;
  const std::string head = read_file_head(path, &size);
  const FileFormat format =
      sniff_format(reinterpret_cast<const uint8_t*>(head.data()), head.size(), size);
  if (format == FileFormat::LegacyTorch) return read_legacy_pt(path);
  IDIFF_REQUIRE(format == FileFormat::Zip, FileError, path,
                ": not a PyTorch file (a torch.save file is a zip archive starting with 'PK')");
  return read_pt(ZipReader::open_file(path));
}

void write_pt(const std::string& path, const PickleValue& value) {
  const Pickled p = pickle(value);
  write_file_atomically(path, [&](const std::string& tmp) {
    ZipWriter zip(tmp);
    const std::string folder = "archive/";
    zip.add(folder + "data.pkl", p.bytes.data(), p.bytes.size());
    zip.add_copy(folder + ".format_version", "1");
    zip.add_copy(folder + ".storage_alignment", "64");
    zip.add_copy(folder + "byteorder", "little");
    for (const auto& s : p.storages)
      zip.add(folder + "data/" + s.key, s.storage->data, s.storage->nbytes);
    zip.add_copy(folder + "version", "3\n");
    zip.close();
  });
}

}  // namespace idiff
