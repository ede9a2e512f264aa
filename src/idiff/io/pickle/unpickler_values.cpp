// What the allowed globals build (OrderedDict, tensors over persistent storages, parameters)
// and the conversion of the arena into the PickleValue tree, with its limits.
#include "idiff/io/pickle/unpickler_machine.h"

namespace idiff::unpickler_detail {

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
  // ('storage', torch.FloatStorage, key, location, numel); the legacy format appends a
  // view_metadata, None for storages saved whole (always, since PyTorch 0.4).
  const Ref pid = pop();
  const Container& c = container(pid, NodeType::Tuple, "a persistent id");
  if ((c.items.size() != 5 && c.items.size() != 6) || nodes_[c.items[0]].type != NodeType::String ||
      string_of(c.items[0], "persistent id") != "storage" ||
      (c.items.size() == 6 && nodes_[c.items[5]].type != NodeType::None)) {
    fail("persistent ids must be ('storage', type, key, location, numel[, None]) tuples");
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

}  // namespace idiff::unpickler_detail
