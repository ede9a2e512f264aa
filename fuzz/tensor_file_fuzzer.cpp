// libFuzzer target for the tensor-file readers: .pt (zip + restricted pickle), npz/npy
// and safetensors, plus bare pickles (the data.pkl of a .pt without the zip around it, so
// mutations reach the pickle machine instead of failing the zip's CRC). It links only the
// LibTorch-free parsers (src/idiff/io: RawTensor, PickleValue), see fuzz/CMakeLists.txt.
//
// The contract under test: every input either parses or throws idiff::FileError. Any
// other exception, a crash, an AddressSanitizer/UBSan report, a leak, a hang (-timeout)
// or an allocation beyond -rss_limit_mb/-malloc_limit_mb is a finding. Parsed values are
// also checked: every tensor view is read element by element, and pickles are written
// back and re-read to the same value.
#include "idiff/common/error.h"
#include "idiff/io/file_format.h"
#include "idiff/io/npy_format.h"
#include "idiff/io/pickle/pickler.h"
#include "idiff/io/pickle/unpickler.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/safetensors_format.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

namespace {

using idiff::PickleValue;
using idiff::RawStorage;
using idiff::RawTensor;

size_t sink = 0;  // keeps the reads below from being optimised away

void touch(const RawTensor& t) {
  const std::string bytes = idiff::contiguous_bytes(t);  // reads every element of the view
  for (char c : bytes) sink += static_cast<unsigned char>(c);
}

void touch(const PickleValue& v) {
  switch (v.kind()) {
    case PickleValue::Kind::Tensor:
      touch(v.as_tensor());
      break;
    case PickleValue::Kind::List:
    case PickleValue::Kind::Tuple:
      for (const auto& x : v.items()) touch(x);
      break;
    case PickleValue::Kind::Dict:
      for (const auto& [k, x] : v.dict_items()) {
        touch(k);
        touch(x);
      }
      break;
    default:
      sink += v.repr().size();
  }
}

// Writing a parsed value and reading it back gives the same value.
void check_round_trip(const PickleValue& v) {
  idiff::Pickled p;
  try {
    p = idiff::pickle(v);
  } catch (const idiff::FileError&) {
    return;  // e.g. a dict key kind the writer refuses
  }
  std::map<std::string, std::shared_ptr<const RawStorage>> storages;
  for (const auto& s : p.storages) storages[s.key] = s.storage;
  const PickleValue back = idiff::unpickle(
      reinterpret_cast<const uint8_t*>(p.bytes.data()), p.bytes.size(),
      [&](const std::string& key, idiff::DType, int64_t) { return storages.at(key); },
      "round trip");
  if (back.repr(1000) != v.repr(1000)) {
    std::fprintf(stderr, "round trip changed the value:\n%s\n%s\n", v.repr(1000).c_str(),
                 back.repr(1000).c_str());
    std::abort();
  }
}

void fuzz_pickle(const uint8_t* data, size_t size) {
  // Storages as the zip reader would give them, with a cap standing in for the record sizes.
  size_t budget = 1 << 20;
  const idiff::StorageLoader load = [&](const std::string&, idiff::DType dtype, int64_t numel) {
    const uint64_t n = static_cast<uint64_t>(numel) * idiff::dtype_size(dtype);
    if (numel > (1 << 20) || n > budget)
      throw idiff::FileError("storage larger than the fuzzer allows");
    budget -= n;
    auto s = RawStorage::allocate(n);
    std::memset(s->mutable_data(), 0x5a, n);
    return std::shared_ptr<const RawStorage>(std::move(s));
  };
  const PickleValue v = idiff::unpickle(data, size, load, "input");
  touch(v);
  check_round_trip(v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    switch (idiff::sniff_format(data, size, size)) {
      case idiff::FileFormat::Zip: {
        const idiff::ZipReader zip = idiff::ZipReader::open_memory(data, size, "input");
        try {
          const PickleValue v = idiff::read_pt(zip);
          touch(v);
          check_round_trip(v);
        } catch (const idiff::FileError&) {
        }
        for (const auto& [name, t] : idiff::read_npz_arrays(zip)) touch(t);
        break;
      }
      case idiff::FileFormat::Npy: {
        auto bytes = RawStorage::allocate(size);
        std::memcpy(bytes->mutable_data(), data, size);
        touch(idiff::parse_npy(std::move(bytes), "input"));
        break;
      }
      case idiff::FileFormat::LegacyTorch:  // a bare pickle stream
        fuzz_pickle(data, size);
        break;
      default: {
        std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
        for (const auto& [name, t] : idiff::read_safetensors_tensors(in, size, "input")) touch(t);
      }
    }
  } catch (const idiff::FileError&) {
    // The expected outcome for malformed input.
  }
  return 0;
}
