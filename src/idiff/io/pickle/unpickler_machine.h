// Internal to the unpickler (unpickler.cpp runs the opcodes, unpickler_values.cpp turns
// the allowed globals into values and the arena into a PickleValue tree). Values live in an
// arena of small nodes referred to by index, so the memo may share them and even form
// cycles without owning pointers: the arena is freed flat, and the result tree is built only
// after STOP, with depth and expansion limits that also catch cycles.
#pragma once

#include "idiff/common/error.h"
#include "idiff/io/pickle/pickle_opcodes.h"
#include "idiff/io/pickle/unpickler.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

namespace idiff::unpickler_detail {

enum class NodeType : uint8_t {
  None,
  Bool,
  Int,
  Float,
  String,
  Tensor,
  List,
  Tuple,
  Dict,
  Global,
  Storage
};

// What an allowed global stands for.
enum class Global : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

using Ref = uint32_t;

struct Container {
  std::vector<Ref> items;                         // list, tuple
  std::vector<std::pair<Ref, Ref>> entries;       // dict, in insertion order
  std::unordered_map<std::string, size_t> index;  // dict key (see key_code) -> entry
  bool ordered = false;                           // collections.OrderedDict
};

struct Node {
  NodeType type = NodeType::None;
  bool flag = false;  // Bool value
  int64_t i = 0;      // Int value; index into strings_/containers_/tensors_/storages_
  double f = 0.0;     // Float value
  Global global = Global::OrderedDict;
  DType dtype = DType::F32;  // StorageType global, Storage
};

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const StorageLoader& loader, const std::string& what)
      : data_(data), size_(size), loader_(loader), what_(what) {
    // Shared singletons: None, False, True cost no node each time they are pushed.
    add_node(NodeType::None);
    add_node(NodeType::Bool).flag = false;
    add_node(NodeType::Bool).flag = true;
  }

  PickleValue run();
  size_t position() const { return pos_; }  // after run(): the bytes up to and with STOP

 private:
  // --- errors and input ---------------------------------------------------------------
  template <typename... Args>
  [[noreturn]] void fail(Args&&... args) const {
    throw FileError(str(what_, ": ", std::forward<Args>(args)..., " (pickle byte ", op_pos_,
                        ", opcode ", op_label(), ")"));
  }
  std::string op_label() const {
    const char* n = pickle_op::name(op_);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op_);
    return n ? str(n, " ", hex) : std::string(hex);
  }
  const uint8_t* take(size_t n) {
    if (n > size_ - pos_) fail("truncated: needs ", n, " more bytes, ", size_ - pos_, " left");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t read_le(size_t n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
  }
  std::string read_string(uint64_t n) {
    if (n > size_ - pos_) fail("truncated: a string of ", n, " bytes, ", size_ - pos_, " left");
    const uint8_t* p = take(static_cast<size_t>(n));
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  std::string read_line() {
    const void* nl = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (!nl) fail("truncated: no end of line");
    const size_t n = static_cast<const uint8_t*>(nl) - (data_ + pos_);
    std::string s = read_string(n);
    ++pos_;
    return s;
  }

  // --- arena --------------------------------------------------------------------------
  Node& add_node(NodeType t) {
    if (nodes_.size() >= kMaxPickleNodes) fail("more than ", kMaxPickleNodes, " values");
    nodes_.emplace_back();
    nodes_.back().type = t;
    return nodes_.back();
  }
  Ref last() const { return static_cast<Ref>(nodes_.size() - 1); }
  Ref new_int(int64_t v) {
    add_node(NodeType::Int).i = v;
    return last();
  }
  Ref new_string(std::string s) {
    add_node(NodeType::String).i = static_cast<int64_t>(strings_.size());
    strings_.push_back(std::move(s));
    return last();
  }
  Ref new_container(NodeType t, bool ordered = false) {
    add_node(t).i = static_cast<int64_t>(containers_.size());
    containers_.emplace_back();
    containers_.back().ordered = ordered;
    return last();
  }
  Ref new_tensor(RawTensor t) {
    add_node(NodeType::Tensor).i = static_cast<int64_t>(tensors_.size());
    tensors_.push_back(std::move(t));
    return last();
  }
  Container& container(Ref r, NodeType t, const char* what) {
    if (nodes_[r].type != t) fail(what, " applied to a ", type_name(r));
    return containers_[static_cast<size_t>(nodes_[r].i)];
  }
  const char* type_name(Ref r) const {
    switch (nodes_[r].type) {
      case NodeType::None:
        return "None";
      case NodeType::Bool:
        return "bool";
      case NodeType::Int:
        return "int";
      case NodeType::Float:
        return "float";
      case NodeType::String:
        return "str";
      case NodeType::Tensor:
        return "tensor";
      case NodeType::List:
        return "list";
      case NodeType::Tuple:
        return "tuple";
      case NodeType::Dict:
        return "dict";
      case NodeType::Global:
        return "global";
      case NodeType::Storage:
        return "storage";
    }
    return "?";
  }

  // --- stack --------------------------------------------------------------------------
  void push(Ref r) {
    if (stack_.size() >= kMaxPickleNodes) fail("stack deeper than ", kMaxPickleNodes);
    stack_.push_back(r);
  }
  Ref pop() {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    const Ref r = stack_.back();
    stack_.pop_back();
    return r;
  }
  Ref& top() {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    return stack_.back();
  }
  size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // Pops everything above the last MARK, and the mark.
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  // --- values -------------------------------------------------------------------------
  int64_t int_of(Ref r, const char* what) {
    if (nodes_[r].type != NodeType::Int) fail(what, " must be an int, not ", type_name(r));
    return nodes_[r].i;
  }
  const std::string& string_of(Ref r, const char* what) {
    if (nodes_[r].type != NodeType::String) fail(what, " must be a str, not ", type_name(r));
    return strings_[static_cast<size_t>(nodes_[r].i)];
  }
  std::vector<int64_t> ints_of(Ref r, const char* what) {
    const Container& c = container(r, NodeType::Tuple, what);
    std::vector<int64_t> v;
    for (Ref x : c.items) v.push_back(int_of(x, what));
    return v;
  }
  std::string key_code(Ref k) {
    const Node& n = nodes_[k];
    if (n.type == NodeType::String) return "s" + strings_[static_cast<size_t>(n.i)];
    if (n.type == NodeType::Int || n.type == NodeType::Bool) {
      const int64_t v = n.type == NodeType::Int ? n.i : int64_t{n.flag};
      return "i" + std::to_string(v);
    }
    fail("dict keys must be str or int, not ", type_name(k));
  }
  void set_item(Ref dict, Ref key, Ref value) {
    Container& c = container(dict, NodeType::Dict, "SETITEM");
    auto [it, inserted] = c.index.emplace(key_code(key), c.entries.size());
    if (inserted)
      c.entries.emplace_back(key, value);
    else
      c.entries[it->second].second = value;
  }

  void op_global(const std::string& module, const std::string& name);
  void op_reduce();
  void op_persistent_id();
  void op_build();
  Ref rebuild_tensor(const std::vector<Ref>& args);
  PickleValue to_value(Ref r, int depth);

  const uint8_t* data_;
  size_t size_;
  const StorageLoader& loader_;
  const std::string& what_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;

  std::vector<Node> nodes_;
  std::vector<std::string> strings_;
  std::vector<Container> containers_;
  std::vector<RawTensor> tensors_;
  std::vector<std::shared_ptr<const RawStorage>> storages_;
  std::unordered_map<std::string, Ref> storage_by_key_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Ref> memo_;
  size_t expanded_ = 0;
};

}  // namespace idiff::unpickler_detail
