// The thin layer between the LibTorch-free file parsers (RawTensor, PickleValue) and
// at::Tensor. Reading shares memory (no copy): the at::Tensor's storage is the buffer the
// file was read into. Writing views the tensor's own storage, so tensors sharing a
// storage stay shared in a .pt file.
#pragma once

#include "idiff/io/pickle/pickle_value.h"
#include "idiff/io/tensor_map.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <unordered_map>

namespace idiff {

at::ScalarType to_scalar_type(DType d);
// FileError naming `what` for dtypes the tensor files here do not hold (complex, uint16...).
DType dtype_of(at::ScalarType s, const std::string& what);

// One at::Storage per RawStorage, so views of one storage alias in LibTorch too.
using StorageCache = std::unordered_map<const RawStorage*, at::Storage>;

// A CPU tensor with the raw tensor's dtype, sizes, strides and offset over (the memory of)
// its storage. Data that is not aligned to the element size is copied first.
at::Tensor to_tensor(const RawTensor& raw, StorageCache* cache = nullptr);

// A view of `t` (moved to the CPU first when it is elsewhere) on its whole storage. The
// raw tensor keeps the storage alive. requires_grad is written as false, like the
// detached tensors of a state_dict().
RawTensor to_raw(const at::Tensor& t, const std::string& what);

// PickleValue conveniences for building and reading .pt trees.
PickleValue tensor_value(const at::Tensor& t, const std::string& what = "tensor");
at::Tensor to_tensor(const PickleValue& v, StorageCache* cache = nullptr);

// An OrderedDict of the map's tensors (what torch.save(model.state_dict()) writes).
PickleValue state_dict_value(const TensorMap& tensors);
// The tensors of a flat dict of str -> tensor; FileError naming `what` and the keys
// found when it is anything else (a training checkpoint with nested dicts, say).
TensorMap tensors_of(const PickleValue& dict, const std::string& what);

}  // namespace idiff
