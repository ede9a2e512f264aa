#include "idiff/io/pickle/pickle_value.h"

#include "idiff/common/error.h"

#include <sstream>

namespace idiff {
namespace {

const char* name_of(PickleValue::Kind k) {
  switch (k) {
    case PickleValue::Kind::None:
      return "None";
    case PickleValue::Kind::Bool:
      return "bool";
    case PickleValue::Kind::Int:
      return "int";
    case PickleValue::Kind::Float:
      return "float";
    case PickleValue::Kind::String:
      return "str";
    case PickleValue::Kind::Tensor:
      return "tensor";
    case PickleValue::Kind::List:
      return "list";
    case PickleValue::Kind::Tuple:
      return "tuple";
    case PickleValue::Kind::Dict:
      return "dict";
  }
  return "?";
}

}  // namespace

PickleValue PickleValue::boolean(bool v) {
  PickleValue p;
  p.kind_ = Kind::Bool;
  p.data_ = v;
  return p;
}

PickleValue PickleValue::integer(int64_t v) {
  PickleValue p;
  p.kind_ = Kind::Int;
  p.data_ = v;
  return p;
}

PickleValue PickleValue::real(double v) {
  PickleValue p;
  p.kind_ = Kind::Float;
  p.data_ = v;
  return p;
}

PickleValue PickleValue::string(std::string v) {
  PickleValue p;
  p.kind_ = Kind::String;
  p.data_ = std::move(v);
  return p;
}

PickleValue PickleValue::tensor(RawTensor v) {
  PickleValue p;
  p.kind_ = Kind::Tensor;
  p.data_ = std::make_shared<const RawTensor>(std::move(v));
  return p;
}

PickleValue PickleValue::list(std::vector<PickleValue> items) {
  PickleValue p;
  p.kind_ = Kind::List;
  p.data_ = std::move(items);
  return p;
}

PickleValue PickleValue::tuple(std::vector<PickleValue> items) {
  PickleValue p;
  p.kind_ = Kind::Tuple;
  p.data_ = std::move(items);
  return p;
}

PickleValue PickleValue::dict(bool ordered) {
  PickleValue p;
  p.kind_ = Kind::Dict;
  p.ordered_ = ordered;
  p.data_ = std::vector<Item>();
  return p;
}

const char* PickleValue::kind_name() const {
  return is_ordered_dict() ? "OrderedDict" : name_of(kind_);
}

void PickleValue::expect(Kind k, const char* what) const {
  IDIFF_REQUIRE(kind_ == k, FileError, "expected ", what, " but found ", kind_name(),
                kind_ == Kind::None ? "" : " ", kind_ == Kind::None ? "" : repr(3));
}

bool PickleValue::as_bool() const {
  expect(Kind::Bool, "a bool");
  return std::get<bool>(data_);
}

int64_t PickleValue::as_int() const {
  expect(Kind::Int, "an int");
  return std::get<int64_t>(data_);
}

double PickleValue::as_float() const {
  if (kind_ == Kind::Int) return static_cast<double>(std::get<int64_t>(data_));
  expect(Kind::Float, "a float");
  return std::get<double>(data_);
}

const std::string& PickleValue::as_string() const {
  expect(Kind::String, "a str");
  return std::get<std::string>(data_);
}

const RawTensor& PickleValue::as_tensor() const {
  expect(Kind::Tensor, "a tensor");
  return *std::get<std::shared_ptr<const RawTensor>>(data_);
}

const std::vector<PickleValue>& PickleValue::items() const {
  IDIFF_REQUIRE(is_sequence(), FileError, "expected a list or tuple but found ", kind_name());
  return seq();
}

std::vector<PickleValue>& PickleValue::items() {
  IDIFF_REQUIRE(is_sequence(), FileError, "expected a list or tuple but found ", kind_name());
  return seq();
}

const std::vector<PickleValue::Item>& PickleValue::dict_items() const {
  expect(Kind::Dict, "a dict");
  return entries();
}

void PickleValue::push_back(PickleValue v) {
  items().push_back(std::move(v));
}

size_t PickleValue::size() const {
  if (kind_ == Kind::Dict) return entries().size();
  return items().size();
}

bool PickleValue::key_equals(const PickleValue& o) const {
  const bool num = kind_ == Kind::Int || kind_ == Kind::Bool;
  const bool onum = o.kind_ == Kind::Int || o.kind_ == Kind::Bool;
  if (num && onum) {
    auto as_number = [](const PickleValue& v) {
      return v.kind_ == Kind::Int ? std::get<int64_t>(v.data_) : int64_t{std::get<bool>(v.data_)};
    };
    return as_number(*this) == as_number(o);
  }
  return kind_ == Kind::String && o.kind_ == Kind::String && as_string() == o.as_string();
}

void PickleValue::set(PickleValue key, PickleValue value) {
  expect(Kind::Dict, "a dict");
  for (auto& item : entries()) {
    if (item.first.key_equals(key)) {
      item.second = std::move(value);
      return;
    }
  }
  entries().emplace_back(std::move(key), std::move(value));
}

void PickleValue::append_item(PickleValue key, PickleValue value) {
  expect(Kind::Dict, "a dict");
  entries().emplace_back(std::move(key), std::move(value));
}

const PickleValue* PickleValue::find(const PickleValue& key) const {
  for (const auto& item : dict_items()) {
    if (item.first.key_equals(key)) return &item.second;
  }
  return nullptr;
}

const PickleValue& PickleValue::at(const std::string& key) const {
  const PickleValue* v = find(key);
  IDIFF_REQUIRE(v != nullptr, FileError, "no key '", key, "' in ", kind_name(), " ", repr(8));
  return *v;
}

const PickleValue& PickleValue::at(int64_t key) const {
  if (is_sequence()) {
    IDIFF_REQUIRE(key >= 0 && static_cast<size_t>(key) < seq().size(), FileError, "index ", key,
                  " out of range for a ", kind_name(), " of ", seq().size());
    return seq()[static_cast<size_t>(key)];
  }
  const PickleValue* v = find(integer(key));
  IDIFF_REQUIRE(v != nullptr, FileError, "no key ", key, " in ", kind_name(), " ", repr(8));
  return *v;
}

std::string PickleValue::repr(size_t max_items) const {
  std::ostringstream os;
  switch (kind_) {
    case Kind::None:
      return "None";
    case Kind::Bool:
      return as_bool() ? "True" : "False";
    case Kind::Int:
      return std::to_string(as_int());
    case Kind::Float:
      os << as_float();
      return os.str();
    case Kind::String: {
      const std::string& s = as_string();
      return "'" + (s.size() > 60 ? s.substr(0, 57) + "..." : s) + "'";
    }
    case Kind::Tensor:
      return str("tensor(", dtype_name(as_tensor().dtype), shape_string(as_tensor().sizes), ")");
    case Kind::List:
    case Kind::Tuple: {
      const auto& items = seq();
      os << (kind_ == Kind::List ? "[" : "(");
      for (size_t i = 0; i < items.size(); ++i) {
        if (i == max_items) {
          os << ", ...";
          break;
        }
        os << (i ? ", " : "") << items[i].repr(max_items);
      }
      if (kind_ == Kind::Tuple && items.size() == 1) os << ",";
      os << (kind_ == Kind::List ? "]" : ")");
      return os.str();
    }
    case Kind::Dict: {
      const auto& dict = entries();
      os << "{";
      for (size_t i = 0; i < dict.size(); ++i) {
        if (i == max_items) {
          os << ", ...";
          break;
        }
        os << (i ? ", " : "") << dict[i].first.repr(max_items) << ": "
           << dict[i].second.repr(max_items);
      }
      os << "}";
      return os.str();
    }
  }
  return "?";
}

}  // namespace idiff
