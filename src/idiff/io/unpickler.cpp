// The restricted pickle machine. Values live in an arena of small nodes referred to by
// index, so the memo may share them and even form cycles without owning pointers: the
// arena is freed flat, and the result tree (PickleValue) is built only after STOP, with
// depth and expansion limits that also catch cycles.
#include "idiff/io/unpickler.h"

#include "idiff/common/error.h"
#include "idiff/io/pickle_opcodes.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

namespace idiff {
namespace {

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

void Machine::op_global(const std::string& module, const std::string& name) {
  Node n;
  n.type = NodeType::Global;
  if (module == "collections" && name == "OrderedDict") {
    n.global = Global::OrderedDict;
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    n.global = Global::RebuildTensorV2;
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    n.global = Global::RebuildParameter;
  } else if (module == "torch" && dtype_from_storage_type(name, &n.dtype)) {
    n.global = Global::StorageType;
  } else {
    fail("the pickle refers to '", module.substr(0, 100), ".", name.substr(0, 100),
         "', which is not allowed (a .pt file may only use OrderedDict, tensor rebuild helpers "
         "and storage types; idiff never runs code from a file)");
  }
  add_node(NodeType::Global) = n;
  push(last());
}

void Machine::op_persistent_id() {
  // ('storage', torch.FloatStorage, key, location, numel)
  const Ref pid = pop();
  const Container& c = container(pid, NodeType::Tuple, "a persistent id");
  if (c.items.size() != 5 || nodes_[c.items[0]].type != NodeType::String ||
      string_of(c.items[0], "persistent id") != "storage") {
    fail("persistent ids must be ('storage', type, key, location, numel) tuples");
  }
  const Node& type = nodes_[c.items[1]];
  if (type.type != NodeType::Global || type.global != Global::StorageType) {
    fail("a persistent id's storage type must be a torch storage class, not ",
         type_name(c.items[1]));
  }
  const DType dtype = type.dtype;
  const std::string key = string_of(c.items[2], "a storage key");
  string_of(c.items[3], "a storage location");
  const int64_t numel = int_of(c.items[4], "a storage size");
  if (numel < 0) fail("storage '", key, "' has negative size ", numel);
  auto it = storage_by_key_.find(key);
  if (it != storage_by_key_.end()) {
    if (nodes_[it->second].dtype != dtype) {
      fail("storage '", key, "' is used as both ", dtype_name(nodes_[it->second].dtype), " and ",
           dtype_name(dtype));
    }
    push(it->second);
    return;
  }
  std::shared_ptr<const RawStorage> s = loader_(key, dtype, numel);
  Node& n = add_node(NodeType::Storage);
  n.dtype = dtype;
  n.i = static_cast<int64_t>(storages_.size());
  storages_.push_back(std::move(s));
  storage_by_key_.emplace(key, last());
  push(last());
}

Ref Machine::rebuild_tensor(const std::vector<Ref>& args) {
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
  // metadata])
  if (args.size() != 6 && args.size() != 7) {
    fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got ", args.size());
  }
  if (nodes_[args[0]].type != NodeType::Storage) {
    fail("_rebuild_tensor_v2 needs a storage, not ", type_name(args[0]));
  }
  const Node& s = nodes_[args[0]];
  RawTensor t;
  t.dtype = s.dtype;
  t.storage = storages_[static_cast<size_t>(s.i)];
  t.offset = int_of(args[1], "a storage offset");
  t.sizes = ints_of(args[2], "a tensor size");
  t.strides = ints_of(args[3], "a tensor stride");
  if (nodes_[args[4]].type != NodeType::Bool) fail("requires_grad must be a bool");
  t.requires_grad = nodes_[args[4]].flag;
  if (nodes_[args[5]].type != NodeType::Dict || !containers_[nodes_[args[5]].i].entries.empty()) {
    fail("tensors with backward hooks are not supported");
  }
  check_view(t, what_);
  return new_tensor(std::move(t));
}

void Machine::op_reduce() {
  const Ref args_ref = pop();
  const Ref callable = pop();
  const Node& g = nodes_[callable];
  if (g.type != NodeType::Global) fail("REDUCE needs a global to call, not ", type_name(callable));
  const std::vector<Ref> args = container(args_ref, NodeType::Tuple, "REDUCE arguments").items;
  switch (g.global) {
    case Global::OrderedDict:
      if (!args.empty()) fail("OrderedDict must be called without arguments");
      push(new_container(NodeType::Dict, /*ordered=*/true));
      return;
    case Global::RebuildTensorV2:
      push(rebuild_tensor(args));
      return;
    case Global::RebuildParameter: {
      // _rebuild_parameter(data, requires_grad, backward_hooks)
      if (args.size() != 3 || nodes_[args[0]].type != NodeType::Tensor ||
          nodes_[args[1]].type != NodeType::Bool) {
        fail("_rebuild_parameter takes (tensor, bool, hooks)");
      }
      RawTensor t = tensors_[static_cast<size_t>(nodes_[args[0]].i)];
      t.requires_grad = nodes_[args[1]].flag;
      push(new_tensor(std::move(t)));
      return;
    }
    case Global::StorageType:
      fail("storage classes may only appear in persistent ids");
  }
}

void Machine::op_build() {
  // BUILD sets an object's state. OrderedDict state dicts carry `_metadata` (module
  // versions); it does not change the tensors, so it is read and dropped.
  pop();
  const Ref target = top();
  if (nodes_[target].type != NodeType::Dict)
    fail("BUILD on a ", type_name(target), " is not supported");
}

PickleValue Machine::run() {
  using namespace pickle_op;
  if (size_ == 0) fail("empty pickle");
  for (;;) {
    op_pos_ = pos_;
    op_ = *take(1);
    switch (op_) {
      case kProto: {
        const uint8_t v = *take(1);
        if (v < 2 || v > 5) fail("pickle protocol ", int{v}, " (expected 2 to 5)");
        break;
      }
      case kFrame:
        take(8);
        break;  // framing only, the length is not needed
      case kStop: {
        if (stack_.size() != 1 || !marks_.empty())
          fail("STOP with ", stack_.size(), " values on the stack");
        return to_value(stack_.back(), 1);
      }
      case kMark:
        marks_.push_back(stack_.size());
        break;
      case kPop:
        pop();
        break;
      case kPopMark:
        pop_mark();
        break;
      case kNone:
        push(0);
        break;
      case kNewFalse:
        push(1);
        break;
      case kNewTrue:
        push(2);
        break;
      case kBinInt1:
        push(new_int(static_cast<int64_t>(read_le(1))));
        break;
      case kBinInt2:
        push(new_int(static_cast<int64_t>(read_le(2))));
        break;
      case kBinInt:
        push(new_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4)))));
        break;
      case kLong1: {  // n-byte little-endian two's complement
        const size_t n = *take(1);
        if (n > 8) fail("integer of ", n, " bytes does not fit 64 bits");
        uint64_t v = n ? read_le(n) : 0;
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
        push(new_int(static_cast<int64_t>(v)));
        break;
      }
      case kBinFloat: {  // big-endian IEEE double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
        double d;
        std::memcpy(&d, &bits, 8);
        add_node(NodeType::Float).f = d;
        push(last());
        break;
      }
      case kBinUnicode:
        push(new_string(read_string(read_le(4))));
        break;
      case kShortBinUnicode:
        push(new_string(read_string(read_le(1))));
        break;
      case kBinUnicode8:
        push(new_string(read_string(read_le(8))));
        break;
      case kEmptyList:
        push(new_container(NodeType::List));
        break;
      case kEmptyTuple:
        push(new_container(NodeType::Tuple));
        break;
      case kEmptyDict:
        push(new_container(NodeType::Dict));
        break;
      case kList: {
        std::vector<Ref> items = pop_mark();
        push(new_container(NodeType::List));
        containers_.back().items = std::move(items);
        break;
      }
      case kTuple: {
        std::vector<Ref> items = pop_mark();
        push(new_container(NodeType::Tuple));
        containers_.back().items = std::move(items);
        break;
      }
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const size_t n = op_ - kTuple1 + 1u;
        std::vector<Ref> items(n);
        for (size_t i = n; i-- > 0;) items[i] = pop();
        push(new_container(NodeType::Tuple));
        containers_.back().items = std::move(items);
        break;
      }
      case kDict: {
        const std::vector<Ref> items = pop_mark();
        if (items.size() % 2) fail("DICT with an odd number of items");
        const Ref d = new_container(NodeType::Dict);
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        push(d);
        break;
      }
      case kAppend: {
        const Ref v = pop();
        container(top(), NodeType::List, "APPEND").items.push_back(v);
        break;
      }
      case kAppends: {
        const std::vector<Ref> items = pop_mark();
        auto& dst = container(top(), NodeType::List, "APPENDS").items;
        dst.insert(dst.end(), items.begin(), items.end());
        break;
      }
      case kSetItem: {
        const Ref v = pop();
        const Ref k = pop();
        set_item(top(), k, v);
        break;
      }
      case kSetItems: {
        const std::vector<Ref> items = pop_mark();
        if (items.size() % 2) fail("SETITEMS with an odd number of items");
        const Ref d = top();
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        break;
      }
      case kBinPut:
        memo_[read_le(1)] = top();
        break;
      case kLongBinPut:
        memo_[read_le(4)] = top();
        break;
      case kMemoize:
        memo_[memo_.size()] = top();
        break;  // the next free index
      case kBinGet:
      case kLongBinGet: {
        const uint64_t k = read_le(op_ == kBinGet ? 1 : 4);
        auto it = memo_.find(k);
        if (it == memo_.end()) fail("memo entry ", k, " was never stored");
        push(it->second);
        break;
      }
      case kGlobal: {
        const std::string module = read_line();
        const std::string name = read_line();
        op_global(module, name);
        break;
      }
      case kStackGlobal: {
        const Ref name = pop();
        const Ref module = pop();
        op_global(string_of(module, "STACK_GLOBAL module"), string_of(name, "STACK_GLOBAL name"));
        break;
      }
      case kBinPersId:
        op_persistent_id();
        break;
      case kReduce:
        op_reduce();
        break;
      case kBuild:
        op_build();
        break;
      default:
        fail("this opcode is not allowed in a .pt file");
    }
  }
}

PickleValue Machine::to_value(Ref r, int depth) {
  if (depth > kMaxPickleDepth) {
    fail("values nested deeper than ", kMaxPickleDepth,
         " levels (or a value that contains itself)");
  }
  if (++expanded_ > 2 * nodes_.size() + 65536) {
    fail("the pickle's shared references unfold into more than ", 2 * nodes_.size() + 65536,
         " values");
  }
  const Node& n = nodes_[r];
  switch (n.type) {
    case NodeType::None:
      return PickleValue::none();
    case NodeType::Bool:
      return PickleValue::boolean(n.flag);
    case NodeType::Int:
      return PickleValue::integer(n.i);
    case NodeType::Float:
      return PickleValue::real(n.f);
    case NodeType::String:
      return PickleValue::string(strings_[static_cast<size_t>(n.i)]);
    case NodeType::Tensor:
      return PickleValue::tensor(tensors_[static_cast<size_t>(n.i)]);
    case NodeType::List:
    case NodeType::Tuple: {
      std::vector<PickleValue> items;
      for (Ref x : containers_[static_cast<size_t>(n.i)].items)
        items.push_back(to_value(x, depth + 1));
      return n.type == NodeType::List ? PickleValue::list(std::move(items))
                                      : PickleValue::tuple(std::move(items));
    }
    case NodeType::Dict: {
      const Container& c = containers_[static_cast<size_t>(n.i)];
      PickleValue d = PickleValue::dict(c.ordered);
      // Keys are unique already (set_item), so append without PickleValue::set's search.
      for (const auto& [k, v] : c.entries)
        d.append_item(to_value(k, depth + 1), to_value(v, depth + 1));
      return d;
    }
    case NodeType::Global:
      fail("a global (class or function) is not a value");
    case NodeType::Storage:
      fail("a bare storage is not a value");
  }
  fail("unknown node");
}

}  // namespace

PickleValue unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage,
                     const std::string& what) {
  return Machine(data, size, load_storage, what).run();
}

}  // namespace idiff
