#include "idiff/io/tensor_convert.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>

#include <cstring>

namespace idiff {

at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::F64:
      return at::kDouble;
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    case DType::I64:
      return at::kLong;
    case DType::I32:
      return at::kInt;
    case DType::I16:
      return at::kShort;
    case DType::I8:
      return at::kChar;
    case DType::U8:
      return at::kByte;
    case DType::Bool:
      return at::kBool;
  }
  TORCH_CHECK(false, "unknown DType");
}

DType dtype_of(at::ScalarType s, const std::string& what) {
  for (DType d : kAllDTypes) {
    if (to_scalar_type(d) == s) return d;
  }
  throw FileError(
      str(what, ": tensors of dtype ", s,
          " cannot be stored (float64/32/16, bfloat16, int64/32/16/8, uint8 and bool can)"));
}

namespace {

at::Storage make_storage(const std::shared_ptr<const RawStorage>& raw, DType dtype) {
  if (raw->nbytes == 0 || reinterpret_cast<uintptr_t>(raw->data) % dtype_size(dtype) != 0) {
    at::Tensor copy = at::empty({static_cast<int64_t>(raw->nbytes)}, at::kByte);
    if (raw->nbytes) std::memcpy(copy.data_ptr(), raw->data, raw->nbytes);
    return copy.storage();
  }
  // The storage owns a reference to the raw storage, which owns the bytes.
  auto* keep = new std::shared_ptr<const RawStorage>(raw);
  at::DataPtr ptr(
      const_cast<uint8_t*>(raw->data), keep,
      [](void* ctx) { delete static_cast<std::shared_ptr<const RawStorage>*>(ctx); },
      at::Device(at::kCPU));
  return at::Storage(at::Storage::use_byte_size_t(), raw->nbytes, std::move(ptr),
                     /*allocator=*/nullptr, /*resizable=*/false);
}

}  // namespace

at::Tensor to_tensor(const RawTensor& raw, StorageCache* cache) {
  check_view(raw, "tensor");
  at::Storage storage;
  if (cache) {
    auto it = cache->find(raw.storage.get());
    if (it == cache->end())
      it = cache->emplace(raw.storage.get(), make_storage(raw.storage, raw.dtype)).first;
    storage = it->second;
  } else {
    storage = make_storage(raw.storage, raw.dtype);
  }
  at::Tensor t = at::empty({0}, at::TensorOptions().dtype(to_scalar_type(raw.dtype)));
  t.set_(storage, raw.offset, raw.sizes, raw.strides);
  return t;
}

RawTensor to_raw(const at::Tensor& input, const std::string& what) {
  IDIFF_REQUIRE(input.defined(), FileError, what, ": undefined tensor");
  IDIFF_REQUIRE(input.layout() == at::kStrided, FileError, what,
                ": only dense tensors can be stored");
  at::Tensor t = input.device().is_cpu() ? input : input.cpu();
  if (t.is_conj()) t = t.resolve_conj();
  if (t.is_neg()) t = t.resolve_neg();
  // An expanding view (more elements than its storage, e.g. from expand()) is written as a
  // copy: the readers refuse such views (check_view).
  if (t.numel() > 0 && static_cast<uint64_t>(t.numel()) * t.element_size() > t.storage().nbytes()) {
    t = t.contiguous();
  }
  RawTensor r;
  r.dtype = dtype_of(t.scalar_type(), what);
  r.sizes = t.sizes().vec();
  r.strides = t.strides().vec();
  r.offset = t.storage_offset();
  const at::Storage& storage = t.storage();
  auto raw = std::make_shared<RawStorage>();
  raw->data = static_cast<const uint8_t*>(storage.data());
  raw->nbytes = storage.nbytes();
  raw->owner = std::make_shared<at::Storage>(storage);
  r.storage = std::move(raw);
  check_view(r, what);
  return r;
}

PickleValue tensor_value(const at::Tensor& t, const std::string& what) {
  return PickleValue::tensor(to_raw(t, what));
}

at::Tensor to_tensor(const PickleValue& v, StorageCache* cache) {
  return to_tensor(v.as_tensor(), cache);
}

PickleValue state_dict_value(const TensorMap& tensors) {
  PickleValue d = PickleValue::ordered_dict();
  for (const auto& [name, t] : tensors) {
    d.append_item(PickleValue::string(name), tensor_value(t, name));
  }
  return d;
}

TensorMap tensors_of(const PickleValue& dict, const std::string& what) {
  IDIFF_REQUIRE(dict.is_dict(), FileError, what, ": holds a ", dict.kind_name(),
                ", not a state dict (a dict of tensors)");
  std::string keys;
  bool flat = true;
  for (const auto& [k, v] : dict.dict_items()) {
    if (keys.size() < 200) keys += (keys.empty() ? "" : ", ") + k.repr(4);
    flat = flat && k.kind() == PickleValue::Kind::String && v.is_tensor();
  }
  IDIFF_REQUIRE(flat, FileError, what,
                ": not a flat state dict of named tensors (top-level keys: ", keys,
                "); save model.state_dict() itself");
  TensorMap out;
  StorageCache cache;
  for (const auto& [k, v] : dict.dict_items()) out.insert(k.as_string(), to_tensor(v, &cache));
  return out;
}

}  // namespace idiff
