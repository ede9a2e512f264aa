// The values a .pt file can hold, as a small tree: None, bool, int, float, str, tensor,
// list, tuple, dict and collections.OrderedDict (dict keys are str or int). It is what
// torch.save(model.state_dict()) and torch.save(optimizer.state_dict()) write and what
// the restricted unpickler reads (unpickler.h) and the pickler writes (pickler.h).
//
//   PickleValue group = PickleValue::dict();
//   group.set("lr", PickleValue::real(1e-4));
//   group.set("betas", PickleValue::tuple({PickleValue::real(0.9), PickleValue::real(0.999)}));
//   double lr = group.at("lr").as_float();
#pragma once

#include "idiff/io/raw_tensor.h"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace idiff {

class PickleValue {
 public:
  enum class Kind { None, Bool, Int, Float, String, Tensor, List, Tuple, Dict };
  using Item = std::pair<PickleValue, PickleValue>;

  PickleValue() = default;  // None
  static PickleValue none() { return {}; }
  static PickleValue boolean(bool v);
  static PickleValue integer(int64_t v);
  static PickleValue real(double v);
  static PickleValue string(std::string v);
  static PickleValue tensor(RawTensor v);
  static PickleValue list(std::vector<PickleValue> items = {});
  static PickleValue tuple(std::vector<PickleValue> items = {});
  // A dict; `ordered` makes it a collections.OrderedDict when written (both keep order).
  static PickleValue dict(bool ordered = false);
  static PickleValue ordered_dict() { return dict(true); }

  Kind kind() const { return kind_; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_tensor() const { return kind_ == Kind::Tensor; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_ordered_dict() const { return kind_ == Kind::Dict && ordered_; }
  bool is_sequence() const { return kind_ == Kind::List || kind_ == Kind::Tuple; }

  // Accessors throw FileError naming the expected and actual kind when it differs.
  // as_float accepts an int too (Python would).
  bool as_bool() const;
  int64_t as_int() const;
  double as_float() const;
  const std::string& as_string() const;
  const RawTensor& as_tensor() const;
  const std::vector<PickleValue>& items() const;  // list or tuple
  std::vector<PickleValue>& items();
  const std::vector<Item>& dict_items() const;  // in insertion order

  // Lists and tuples.
  void push_back(PickleValue v);
  size_t size() const;  // elements of a list/tuple, entries of a dict

  // Dicts: set replaces the value of an equal key (keys are compared as Python does for
  // str and int) or appends. find returns nullptr when absent; at throws FileError.
  void set(PickleValue key, PickleValue value);
  void set(const std::string& key, PickleValue value) { set(string(key), std::move(value)); }
  // Appends without looking for an equal key: for callers whose keys are known to be
  // unique (a TensorMap's names, a parsed dict), where set's search would be quadratic.
  void append_item(PickleValue key, PickleValue value);
  const PickleValue* find(const PickleValue& key) const;
  const PickleValue* find(const std::string& key) const { return find(string(key)); }
  const PickleValue& at(const std::string& key) const;
  const PickleValue& at(int64_t key) const;  // a dict's int key, or a list/tuple index

  // Python equality of keys (str, int, bool as int; other kinds never equal).
  bool key_equals(const PickleValue& other) const;

  // "dict", "OrderedDict", "tensor", ... for messages.
  const char* kind_name() const;
  // A one-line Python-like rendering, tensors as tensor(F32[3, 4]); long containers elided.
  std::string repr(size_t max_items = 8) const;

 private:
  void expect(Kind k, const char* what) const;

  std::vector<PickleValue>& seq() { return std::get<std::vector<PickleValue>>(data_); }
  const std::vector<PickleValue>& seq() const { return std::get<std::vector<PickleValue>>(data_); }
  std::vector<Item>& entries() { return std::get<std::vector<Item>>(data_); }
  const std::vector<Item>& entries() const { return std::get<std::vector<Item>>(data_); }

  // Kept small (about 48 bytes): parsed trees may hold millions of values.
  Kind kind_ = Kind::None;
  bool ordered_ = false;
  std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<const RawTensor>,
               std::vector<PickleValue>, std::vector<Item>>
      data_;
};

// Nesting depth (a scalar is 1). Readers and writers refuse trees deeper than this.
constexpr int kMaxPickleDepth = 100;

}  // namespace idiff
