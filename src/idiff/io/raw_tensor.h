// A tensor as the file parsers see it, without LibTorch: bytes of a storage plus dtype,
// sizes, strides and offset (in elements), like a strided at::Tensor on the CPU. Tensors
// that share a storage in a .pt file share one RawStorage here. tensor_convert.h turns
// them into at::Tensor (sharing the memory) and back.
#pragma once

#include "idiff/io/dtype.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor files are little-endian; idiff copies their bytes as they are"
#endif

namespace idiff {

// Bytes owned by `owner` (a buffer read from a file, or an at::Storage being saved).
struct RawStorage {
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;

  // A fresh uninitialised buffer of n bytes (data is writable through mutable_data()).
  static std::shared_ptr<RawStorage> allocate(size_t n);
  uint8_t* mutable_data() const { return const_cast<uint8_t*>(data); }
};

struct RawTensor {
  DType dtype = DType::F32;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;  // in elements
  int64_t offset = 0;            // in elements, into the storage
  bool requires_grad = false;    // as pickled (nn.Parameter); informational
  std::shared_ptr<const RawStorage> storage;

  int64_t numel() const;
  bool is_contiguous() const;
};

// Strides of a contiguous (row-major) tensor of these sizes.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& sizes);

// The product of sizes, or -1 when a size is negative or the product exceeds 2^62.
int64_t checked_numel(const std::vector<int64_t>& sizes);

// Throws FileError (prefixed with `what`) unless the view lies inside its storage: sizes
// and strides non-negative and of equal rank (at most 64), offset + extent within the
// storage's elements.
void check_view(const RawTensor& t, const std::string& what);

// A contiguous (row-major) view of `storage` starting at element `offset`; FileError
// naming nothing but the sizes when the storage is too small (callers check first).
RawTensor contiguous_raw_tensor(DType dtype, std::vector<int64_t> sizes,
                                std::shared_ptr<const RawStorage> storage, int64_t offset = 0);

// The tensor's elements in row-major order, as bytes (a copy; gathers strided views).
std::string contiguous_bytes(const RawTensor& t);

// "[3, 4]"
std::string shape_string(const std::vector<int64_t>& sizes);

}  // namespace idiff
