// The restricted pickle machine's main loop: one case per allowed opcode (see unpickler.h
// for the rules and unpickler_machine.h for the arena).
#include "idiff/io/pickle/unpickler.h"

#include "idiff/io/pickle/unpickler_machine.h"

namespace idiff {
namespace unpickler_detail {

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

}  // namespace unpickler_detail

PickleValue unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage,
                     const std::string& what, size_t* consumed) {
  unpickler_detail::Machine machine(data, size, load_storage, what);
  PickleValue value = machine.run();
  if (consumed != nullptr) *consumed = machine.position();
  return value;
}

}  // namespace idiff
