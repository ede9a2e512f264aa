#include "idiff/io/dtype.h"

namespace idiff {
namespace {

struct DTypeInfo {
  DType dtype;
  size_t size;
  const char* name;
  const char* storage;
  const char* npy;
};

constexpr DTypeInfo kInfo[] = {
    {DType::F64, 8, "F64", "DoubleStorage", "<f8"},
    {DType::F32, 4, "F32", "FloatStorage", "<f4"},
    {DType::F16, 2, "F16", "HalfStorage", "<f2"},
    {DType::BF16, 2, "BF16", "BFloat16Storage", nullptr},
    {DType::I64, 8, "I64", "LongStorage", "<i8"},
    {DType::I32, 4, "I32", "IntStorage", "<i4"},
    {DType::I16, 2, "I16", "ShortStorage", "<i2"},
    {DType::I8, 1, "I8", "CharStorage", "|i1"},
    {DType::U8, 1, "U8", "ByteStorage", "|u1"},
    {DType::Bool, 1, "BOOL", "BoolStorage", "|b1"},
};

const DTypeInfo& info(DType d) {
  return kInfo[static_cast<int>(d)];
}

}  // namespace

size_t dtype_size(DType d) {
  return info(d).size;
}
const char* dtype_name(DType d) {
  return info(d).name;
}
const char* storage_type_name(DType d) {
  return info(d).storage;
}
const char* npy_descr(DType d) {
  return info(d).npy;
}

bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& i : kInfo) {
    if (name == i.name) return *out = i.dtype, true;
  }
  return false;
}

bool dtype_from_storage_type(const std::string& name, DType* out) {
  for (const auto& i : kInfo) {
    if (name == i.storage) return *out = i.dtype, true;
  }
  return false;
}

bool dtype_from_npy_descr(const std::string& descr, DType* out) {
  // Single-byte types may be spelled with any byte-order mark; '=' is native (little here).
  for (const auto& i : kInfo) {
    if (!i.npy) continue;
    const std::string want = i.npy;
    if (descr == want) return *out = i.dtype, true;
    if (descr.size() == 3 && descr.substr(1) == want.substr(1) &&
        (descr[0] == '=' || (i.size == 1 && (descr[0] == '<' || descr[0] == '|')))) {
      return *out = i.dtype, true;
    }
  }
  return false;
}

}  // namespace idiff
