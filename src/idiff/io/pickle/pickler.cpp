// Opcodes as in Lib/pickletools.py. Globals are memoised (BINPUT/BINGET) as torch.save
// does; other values are written once each.
#include "idiff/io/pickle/pickler.h"

#include "idiff/common/error.h"
#include "idiff/io/pickle/pickle_opcodes.h"

#include <cstring>
#include <map>
#include <tuple>

namespace idiff {
namespace {

using namespace pickle_op;

// TUPLE1..3 for short tuples (no MARK before them), TUPLE after a MARK otherwise.
uint8_t tuple_end(size_t n) {
  return n == 1 ? kTuple1 : n == 2 ? kTuple2 : n == 3 ? kTuple3 : kTuple;
}

class Pickler {
 public:
  Pickled run(const PickleValue& v) {
    byte(kProto);
    byte(2);
    write(v, 1);
    byte(kStop);
    return {std::move(out_), std::move(storages_)};
  }

 private:
  void byte(uint8_t b) { out_ += static_cast<char>(b); }
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }

  void write_int(int64_t v) {
    if (v >= 0 && v < 256) {
      byte(kBinInt1);
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      byte(kBinInt2);
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      byte(kBinInt);
      le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      // LONG1: the shortest little-endian two's complement form.
      int n = 8;
      while (n > 1) {
        const int64_t shifted = v >> (8 * (n - 1) - 1);
        if (shifted != 0 && shifted != -1) break;
        --n;
      }
      byte(kLong1);
      byte(static_cast<uint8_t>(n));
      le(static_cast<uint64_t>(v), n);
    }
  }

  void write_string(const std::string& s) {
    byte(kBinUnicode);
    le(s.size(), 4);
    out_ += s;
  }

  // GLOBAL module\nname\n, memoised.
  void write_global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      if (it->second < 256) {
        byte(kBinGet);
        le(it->second, 1);
      } else {
        byte(kLongBinGet);
        le(it->second, 4);
      }
      return;
    }
    byte(kGlobal);
    out_ += key;
    const uint32_t id = static_cast<uint32_t>(memo_.size());
    memo_.emplace(key, id);
    if (id < 256) {
      byte(kBinPut);
      le(id, 1);
    } else {
      byte(kLongBinPut);
      le(id, 4);
    }
  }

  void write_ints_tuple(const std::vector<int64_t>& v) {
    if (v.empty()) {
      byte(kEmptyTuple);
      return;
    }
    if (v.size() > 3) byte(kMark);
    for (int64_t x : v) write_int(x);
    byte(tuple_end(v.size()));
  }

  void write_empty_ordered_dict() {
    write_global("collections", "OrderedDict");
    byte(kEmptyTuple);
    byte(kReduce);
  }

  const std::string& storage_key(const RawTensor& t) {
    // Same memory, same dtype: one storage (torch.save's sharing). Empty storages have
    // no identity and get a key each.
    const auto id =
        std::make_tuple(static_cast<const void*>(t.storage->data), t.storage->nbytes, t.dtype);
    if (t.storage->nbytes > 0) {
      auto it = storage_keys_.find(id);
      if (it != storage_keys_.end()) return it->second;
    }
    const std::string key = std::to_string(storages_.size());
    storages_.push_back({key, t.storage});
    if (t.storage->nbytes == 0) return storages_.back().key;
    return storage_keys_.emplace(id, key).first->second;
  }

  void write_tensor(const RawTensor& t) {
    check_view(t, "tensor to save");
    // _rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), offset, size,
    //                    stride, requires_grad, OrderedDict())
    write_global("torch._utils", "_rebuild_tensor_v2");
    byte(kMark);
    byte(kMark);
    write_string("storage");
    write_global("torch", storage_type_name(t.dtype));
    write_string(storage_key(t));
    write_string("cpu");
    write_int(static_cast<int64_t>(t.storage->nbytes / dtype_size(t.dtype)));
    byte(kTuple);
    byte(kBinPersId);
    write_int(t.offset);
    write_ints_tuple(t.sizes);
    write_ints_tuple(t.strides);
    byte(t.requires_grad ? kNewTrue : kNewFalse);
    write_empty_ordered_dict();
    byte(kTuple);
    byte(kReduce);
  }

  void write(const PickleValue& v, int depth) {
    IDIFF_REQUIRE(depth <= kMaxPickleDepth, FileError, "cannot save values nested deeper than ",
                  kMaxPickleDepth, " levels");
    switch (v.kind()) {
      case PickleValue::Kind::None:
        byte(kNone);
        return;
      case PickleValue::Kind::Bool:
        byte(v.as_bool() ? kNewTrue : kNewFalse);
        return;
      case PickleValue::Kind::Int:
        write_int(v.as_int());
        return;
      case PickleValue::Kind::Float: {
        const double d = v.as_float();
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        byte(kBinFloat);
        for (int i = 7; i >= 0; --i) byte(static_cast<uint8_t>(bits >> (8 * i)));
        return;
      }
      case PickleValue::Kind::String:
        write_string(v.as_string());
        return;
      case PickleValue::Kind::Tensor:
        write_tensor(v.as_tensor());
        return;
      case PickleValue::Kind::List:
        byte(kEmptyList);
        if (!v.items().empty()) {
          byte(kMark);
          for (const auto& x : v.items()) write(x, depth + 1);
          byte(kAppends);
        }
        return;
      case PickleValue::Kind::Tuple: {
        const auto& items = v.items();
        if (items.empty()) {
          byte(kEmptyTuple);
          return;
        }
        if (items.size() > 3) byte(kMark);
        for (const auto& x : items) write(x, depth + 1);
        byte(tuple_end(items.size()));
        return;
      }
      case PickleValue::Kind::Dict:
        if (v.is_ordered_dict()) {
          write_empty_ordered_dict();
        } else {
          byte(kEmptyDict);
        }
        if (v.size() > 0) {
          byte(kMark);
          for (const auto& [k, x] : v.dict_items()) {
            IDIFF_REQUIRE(k.kind() == PickleValue::Kind::String ||
                              k.kind() == PickleValue::Kind::Int ||
                              k.kind() == PickleValue::Kind::Bool,
                          FileError, "cannot save a dict key of type ", k.kind_name(),
                          " (str or int expected)");
            write(k, depth + 1);
            write(x, depth + 1);
          }
          byte(kSetItems);
        }
        return;
    }
  }

  std::string out_;
  std::map<std::string, uint32_t> memo_;
  std::vector<PickledStorage> storages_;
  std::map<std::tuple<const void*, size_t, DType>, std::string> storage_keys_;
};

}  // namespace

Pickled pickle(const PickleValue& value) {
  return Pickler().run(value);
}

}  // namespace idiff
