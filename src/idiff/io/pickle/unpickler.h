// A restricted pickle reader for the data.pkl record of torch.save files (reference:
// Python's pickle protocol, Lib/pickletools.py; torch/serialization.py for the tensor
// and storage conventions). It is a stack machine that understands only the opcodes a
// state dict or an optimizer state uses (protocol 2, plus the framing, short-string and
// memo opcodes of protocols 3-5) and only these globals:
//
//   collections.OrderedDict               (called with no arguments; BUILD state ignored)
//   torch._utils._rebuild_tensor_v2       (storage, offset, size, stride, requires_grad, hooks[,
//   metadata]) torch._utils._rebuild_parameter       (tensor, requires_grad, hooks)
//   torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage
//                                         (only inside a persistent id ('storage', type, key,
//                                         location, numel), or the legacy format's
//                                         (..., numel, None))
//
// Nothing is ever imported or called: a global is a tag, and REDUCE on a tag builds the
// value the tag stands for. Any other global or opcode is a FileError naming it. Limits
// keep hostile input bounded: the value graph may hold at most kMaxPickleNodes nodes,
// nest at most kMaxPickleDepth deep (self-references count as too deep), and expand
// through shared references to at most twice its nodes (plus 65536) values, so a small
// file cannot unfold into a huge tree.
#pragma once

#include "idiff/io/pickle/pickle_value.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace idiff {

constexpr size_t kMaxPickleNodes = size_t{4} << 20;

// Returns the bytes of the storage a persistent id names: `numel` elements of `dtype`
// (a FileError when the file holds no such record or a record of another size). Called
// once per key; tensors naming the same key share the storage.
using StorageLoader = std::function<std::shared_ptr<const RawStorage>(const std::string& key,
                                                                      DType dtype, int64_t numel)>;

// Runs the pickle that starts at data[0] (up to its STOP, within `size` bytes). `what`
// names the file in error messages. `consumed`, when given, receives the pickle's length
// (files holding several pickles back to back: the legacy torch.save format).
PickleValue unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage,
                     const std::string& what, size_t* consumed = nullptr);

}  // namespace idiff
