// Opcodes as in Lib/pickletools.py. Globals are memoised (BINPUT/BINGET) as torch.save
// does; other values are written once each.
#include "idiff/io/pickler.h"

#include "idiff/common/error.h"

#include <cstring>
#include <map>
#include <tuple>

namespace idiff {
namespace {

class Pickler {
 public:
  Pickled run(const PickleValue& v) {
    out_ += "\x80\x02";  // PROTO 2
    write(v, 1);
    out_ += '.';  // STOP
    return {std::move(out_), std::move(storages_)};
  }

 private:
  void byte(uint8_t b) { out_ += static_cast<char>(b); }
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }

  void write_int(int64_t v) {
    if (v >= 0 && v < 256) {
      byte('K');
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      byte('M');
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      byte('J');
      le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      // LONG1: the shortest little-endian two's complement form.
      int n = 8;
      while (n > 1) {
        const int64_t shifted = v >> (8 * (n - 1) - 1);
        if (shifted != 0 && shifted != -1) break;
        --n;
      }
      byte(0x8a);
      byte(static_cast<uint8_t>(n));
      le(static_cast<uint64_t>(v), n);
    }
  }

  void write_string(const std::string& s) {
    byte('X');
    le(s.size(), 4);
    out_ += s;
  }

  // GLOBAL module\nname\n, memoised.
  void write_global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    auto it = memo_.find(key);
    if (it != memo_.end()) {
      if (it->second < 256) {
        byte('h');
        le(it->second, 1);
      } else {
        byte('j');
        le(it->second, 4);
      }
      return;
    }
    out_ += 'c' + key;
    const uint32_t id = static_cast<uint32_t>(memo_.size());
    memo_.emplace(key, id);
    if (id < 256) {
      byte('q');
      le(id, 1);
    } else {
      byte('r');
      le(id, 4);
    }
  }

  void write_ints_tuple(const std::vector<int64_t>& v) {
    if (v.empty()) {
      byte(')');
      return;
    }
    if (v.size() > 3) byte('(');
    for (int64_t x : v) write_int(x);
    byte(v.size() == 1 ? 0x85 : v.size() == 2 ? 0x86 : v.size() == 3 ? 0x87 : 't');
  }

  void write_empty_ordered_dict() {
    write_global("collections", "OrderedDict");
    byte(')');
    byte('R');
  }

  const std::string& storage_key(const RawTensor& t) {
    // Same memory, same dtype: one storage (torch.save's sharing). Empty storages have
    // no identity and get a key each.
    const auto id = std::make_tuple(static_cast<const void*>(t.storage->data), t.storage->nbytes, t.dtype);
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
    byte('(');
    byte('(');
    write_string("storage");
    write_global("torch", storage_type_name(t.dtype));
    write_string(storage_key(t));
    write_string("cpu");
    write_int(static_cast<int64_t>(t.storage->nbytes / dtype_size(t.dtype)));
    byte('t');
    byte('Q');  // BINPERSID
    write_int(t.offset);
    write_ints_tuple(t.sizes);
    write_ints_tuple(t.strides);
    byte(t.requires_grad ? 0x88 : 0x89);
    write_empty_ordered_dict();
    byte('t');
    byte('R');
  }

  void write(const PickleValue& v, int depth) {
    IDIFF_REQUIRE(depth <= kMaxPickleDepth, FileError, "cannot save values nested deeper than ",
                  kMaxPickleDepth, " levels");
    switch (v.kind()) {
      case PickleValue::Kind::None: byte('N'); return;
      case PickleValue::Kind::Bool: byte(v.as_bool() ? 0x88 : 0x89); return;
      case PickleValue::Kind::Int: write_int(v.as_int()); return;
      case PickleValue::Kind::Float: {
        const double d = v.as_float();
        uint64_t bits;
        std::memcpy(&bits, &d, 8);
        byte('G');
        for (int i = 7; i >= 0; --i) byte(static_cast<uint8_t>(bits >> (8 * i)));
        return;
      }
      case PickleValue::Kind::String: write_string(v.as_string()); return;
      case PickleValue::Kind::Tensor: write_tensor(v.as_tensor()); return;
      case PickleValue::Kind::List:
        byte(']');
        if (!v.items().empty()) {
          byte('(');
          for (const auto& x : v.items()) write(x, depth + 1);
          byte('e');  // APPENDS
        }
        return;
      case PickleValue::Kind::Tuple: {
        const auto& items = v.items();
        if (items.empty()) {
          byte(')');
          return;
        }
        if (items.size() > 3) byte('(');
        for (const auto& x : items) write(x, depth + 1);
        byte(items.size() == 1 ? 0x85 : items.size() == 2 ? 0x86 : items.size() == 3 ? 0x87 : 't');
        return;
      }
      case PickleValue::Kind::Dict:
        if (v.is_ordered_dict()) {
          write_empty_ordered_dict();
        } else {
          byte('}');
        }
        if (v.size() > 0) {
          byte('(');
          for (const auto& [k, x] : v.dict_items()) {
            IDIFF_REQUIRE(k.kind() == PickleValue::Kind::String || k.kind() == PickleValue::Kind::Int ||
                              k.kind() == PickleValue::Kind::Bool,
                          FileError, "cannot save a dict key of type ", k.kind_name(),
                          " (str or int expected)");
            write(k, depth + 1);
            write(x, depth + 1);
          }
          byte('u');  // SETITEMS
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

Pickled pickle(const PickleValue& value) { return Pickler().run(value); }

}  // namespace idiff
