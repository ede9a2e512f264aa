#include "idiff/io/pt_legacy.h"

#include "idiff/common/error.h"
#include "idiff/io/pickle/unpickler.h"

#include <cstring>
#include <fstream>
#include <map>

namespace idiff {
namespace {

// pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2): PROTO 2, LONG1 of 10 bytes, STOP. The
// number needs 80 bits, more than the unpickler's integers, so it is compared as bytes.
constexpr uint8_t kMagicPickle[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
constexpr int64_t kProtocolVersion = 1001;

struct PendingStorage {
  std::shared_ptr<RawStorage> bytes;
  int64_t numel = 0;
  size_t element_size = 0;
  bool filled = false;
};

}  // namespace

PickleValue read_legacy_pt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  IDIFF_REQUIRE(in.is_open(), FileError, path, ": cannot open");
  in.seekg(0, std::ios::end);
  const auto n = static_cast<size_t>(in.tellg());
  in.seekg(0);
  auto file = RawStorage::allocate(n);
  in.read(reinterpret_cast<char*>(file->mutable_data()), static_cast<std::streamsize>(n));
  IDIFF_REQUIRE(in.good() || n == 0, FileError, path, ": cannot read");
  const uint8_t* p = file->data;
  size_t pos = 0;

  IDIFF_REQUIRE(n >= sizeof kMagicPickle && std::memcmp(p, kMagicPickle, sizeof kMagicPickle) == 0,
                FileError, path,
                ": not a legacy torch.save file (no magic number pickled with protocol 2)");
  pos = sizeof kMagicPickle;

  const StorageLoader no_storages = [&](const std::string& key, DType,
                                        int64_t) -> std::shared_ptr<const RawStorage> {
    throw FileError(str(path, ": a storage ('", key.substr(0, 64), "') outside the value"));
  };
  auto next = [&](const StorageLoader& loader, const char* part) {
    size_t used = 0;
    PickleValue v = unpickle(p + pos, n - pos, loader, str(path, " (legacy ", part, ")"), &used);
    pos += used;
    return v;
  };
  const PickleValue version = next(no_storages, "protocol version");
  IDIFF_REQUIRE(version.kind() == PickleValue::Kind::Int && version.as_int() == kProtocolVersion,
                FileError, path, ": legacy torch.save protocol version ", version.repr(),
                " (expected ", kProtocolVersion, ")");
  const PickleValue sys_info = next(no_storages, "sys_info");
  IDIFF_REQUIRE(sys_info.is_dict(), FileError, path, ": legacy sys_info is not a dict");
  for (const auto& [k, v] : sys_info.dict_items()) {
    if (k.kind() == PickleValue::Kind::String && k.as_string() == "little_endian")
      IDIFF_REQUIRE(v.kind() == PickleValue::Kind::Bool && v.as_bool(), FileError, path,
                    ": a big-endian legacy torch.save file is not supported");
  }

  // Storages are named in the value but stored after it: allocate them as they are named
  // (at most the file's size in all), fill them below.
  std::map<std::string, PendingStorage> storages;
  uint64_t named_bytes = 0;
  const StorageLoader loader = [&](const std::string& key, DType dtype,
                                   int64_t numel) -> std::shared_ptr<const RawStorage> {
    const size_t elsize = dtype_size(dtype);
    const uint64_t nbytes = static_cast<uint64_t>(numel) * elsize;
    IDIFF_REQUIRE(
        numel >= 0 && static_cast<uint64_t>(numel) <= n / elsize && named_bytes + nbytes <= n,
        FileError, path, ": storage '", key.substr(0, 64), "' declares ", numel,
        " elements, more than the ", n, "-byte file holds");
    named_bytes += nbytes;
    PendingStorage& s = storages[key];
    s.bytes = RawStorage::allocate(static_cast<size_t>(nbytes));
    s.numel = numel;
    s.element_size = elsize;
    return s.bytes;
  };
  PickleValue value = next(loader, "value");
  const PickleValue keys = next(no_storages, "storage keys");
  IDIFF_REQUIRE(keys.kind() == PickleValue::Kind::List && keys.size() == storages.size(), FileError,
                path, ": the legacy storage key list does not match the ", storages.size(),
                " storages the value names");
  for (const PickleValue& k : keys.items()) {
    IDIFF_REQUIRE(k.kind() == PickleValue::Kind::String, FileError, path,
                  ": a legacy storage key is not a string");
    auto it = storages.find(k.as_string());
    IDIFF_REQUIRE(it != storages.end() && !it->second.filled, FileError, path, ": storage key '",
                  k.as_string().substr(0, 64), "' is unknown or listed twice");
    PendingStorage& s = it->second;
    IDIFF_REQUIRE(n - pos >= 8, FileError, path, ": truncated before storage '", it->first, "'");
    int64_t numel = 0;
    std::memcpy(&numel, p + pos, 8);  // little-endian, checked in sys_info
    pos += 8;
    const uint64_t nbytes = static_cast<uint64_t>(s.numel) * s.element_size;
    IDIFF_REQUIRE(numel == s.numel && nbytes <= n - pos, FileError, path, ": storage '", it->first,
                  "' holds ", numel, " elements (", n - pos, " bytes left), its pickle says ",
                  s.numel);
    std::memcpy(s.bytes->mutable_data(), p + pos, nbytes);
    pos += nbytes;
    s.filled = true;
  }
  IDIFF_REQUIRE(pos == n, FileError, path, ": ", n - pos, " unexpected bytes after the storages");
  return value;
}

}  // namespace idiff
