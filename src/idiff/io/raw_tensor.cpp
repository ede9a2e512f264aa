#include "idiff/io/raw_tensor.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cstring>

namespace idiff {

namespace {
constexpr int64_t kMaxElements = int64_t{1} << 62;
constexpr size_t kMaxRank = 64;
}  // namespace

std::shared_ptr<RawStorage> RawStorage::allocate(size_t n) {
  auto s = std::make_shared<RawStorage>();
  // Uninitialised on purpose: every byte is overwritten by the reader.
  std::shared_ptr<uint8_t[]> buffer(new uint8_t[n == 0 ? 1 : n]);
  s->data = buffer.get();
  s->nbytes = n;
  s->owner = std::move(buffer);
  return s;
}

int64_t checked_numel(const std::vector<int64_t>& sizes) {
  for (int64_t s : sizes) {
    if (s < 0) return -1;
  }
  for (int64_t s : sizes) {
    if (s == 0) return 0;
  }
  int64_t n = 1;
  for (int64_t s : sizes) {
    if (s > kMaxElements / n) return -1;
    n *= s;
  }
  return n;
}

int64_t RawTensor::numel() const {
  return checked_numel(sizes);
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> strides(sizes.size());
  int64_t s = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = s;
    const int64_t n = std::max<int64_t>(sizes[i], 1);
    s = s <= kMaxElements / n ? s * n : kMaxElements;  // saturates only for empty tensors
  }
  return strides;
}

bool RawTensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] == 1) continue;
    if (strides[i] != expected) return numel() == 0;
    expected *= sizes[i];
  }
  return true;
}

void check_view(const RawTensor& t, const std::string& what) {
  IDIFF_REQUIRE(t.storage != nullptr, FileError, what, ": tensor without storage");
  IDIFF_REQUIRE(t.sizes.size() == t.strides.size() && t.sizes.size() <= kMaxRank, FileError, what,
                ": tensor of size ", shape_string(t.sizes), " has strides ",
                shape_string(t.strides), " (ranks must match and be at most ", kMaxRank, ")");
  const int64_t numel = t.numel();
  IDIFF_REQUIRE(numel >= 0, FileError, what, ": tensor size ", shape_string(t.sizes),
                " is negative or too large");
  const size_t elsize = dtype_size(t.dtype);
  const auto storage_elems = static_cast<int64_t>(t.storage->nbytes / elsize);
  IDIFF_REQUIRE(t.storage->nbytes % elsize == 0, FileError, what, ": storage of ",
                t.storage->nbytes, " bytes is not a whole number of ", dtype_name(t.dtype),
                " elements");
  IDIFF_REQUIRE(t.offset >= 0 && t.offset <= storage_elems, FileError, what, ": storage offset ",
                t.offset, " outside a storage of ", storage_elems, " elements");
  if (numel == 0) return;
  // The last element a view touches is offset + sum((size_i - 1) * stride_i).
  int64_t last = t.offset;
  for (size_t i = 0; i < t.sizes.size(); ++i) {
    IDIFF_REQUIRE(t.strides[i] >= 0 && t.strides[i] <= kMaxElements, FileError, what, ": stride ",
                  t.strides[i], " is negative or too large");
    const int64_t reach = t.sizes[i] - 1;
    IDIFF_REQUIRE(t.strides[i] == 0 || reach <= (kMaxElements - last) / t.strides[i], FileError,
                  what, ": tensor of size ", shape_string(t.sizes), " and strides ",
                  shape_string(t.strides), " overflows");
    last += reach * t.strides[i];
  }
  IDIFF_REQUIRE(last < storage_elems, FileError, what, ": tensor of size ", shape_string(t.sizes),
                ", strides ", shape_string(t.strides), " and offset ", t.offset,
                " reaches past its storage of ", storage_elems, " elements");
  // More elements than the storage holds: an expanding view (stride 0, as expand() makes),
  // which would grow to numel elements when copied; refused so that what a file makes us
  // allocate is bounded by what it holds.
  IDIFF_REQUIRE(numel <= storage_elems, FileError, what, ": tensor of size ", shape_string(t.sizes),
                " and strides ", shape_string(t.strides), " views ", numel,
                " elements of a storage of ", storage_elems,
                " (an expanding view; save a .contiguous() copy instead)");
}

RawTensor contiguous_raw_tensor(DType dtype, std::vector<int64_t> sizes,
                                std::shared_ptr<const RawStorage> storage, int64_t offset) {
  RawTensor t;
  t.dtype = dtype;
  t.strides = contiguous_strides(sizes);
  t.sizes = std::move(sizes);
  t.offset = offset;
  t.storage = std::move(storage);
  check_view(t, "tensor");
  return t;
}

std::string contiguous_bytes(const RawTensor& t) {
  const size_t elsize = dtype_size(t.dtype);
  const int64_t numel = t.numel();
  std::string out(static_cast<size_t>(numel) * elsize, '\0');
  if (numel == 0) return out;
  const uint8_t* base = t.storage->data + static_cast<size_t>(t.offset) * elsize;
  if (t.is_contiguous()) {
    std::memcpy(out.data(), base, out.size());
    return out;
  }
  // Odometer over the index space, innermost dimension fastest.
  const size_t rank = t.sizes.size();
  std::vector<int64_t> index(rank, 0);
  int64_t pos = 0;  // element offset of `index` relative to base
  for (int64_t n = 0; n < numel; ++n) {
    std::memcpy(out.data() + static_cast<size_t>(n) * elsize,
                base + static_cast<size_t>(pos) * elsize, elsize);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < t.sizes[d]) {
        pos += t.strides[d];
        break;
      }
      pos -= (t.sizes[d] - 1) * t.strides[d];
      index[d] = 0;
    }
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace idiff
