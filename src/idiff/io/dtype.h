// Element types of tensor files, without LibTorch: the parsers (pickle, zip, safetensors,
// npy) work on these so that the fuzz target links without it (tensor_convert.h maps them
// to at::ScalarType). Each format's own spelling is here: safetensors "F32", the pickled
// storage class "FloatStorage", numpy's descr "<f4".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace idiff {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

constexpr DType kAllDTypes[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                DType::I32, DType::I16, DType::I8,  DType::U8,   DType::Bool};

size_t dtype_size(DType d);

// "F64" ... "BOOL" (the safetensors names; also what `idiff info` prints).
const char* dtype_name(DType d);
bool dtype_from_name(const std::string& name, DType* out);

// torch's legacy storage classes, as torch.save pickles them: "FloatStorage", ...
const char* storage_type_name(DType d);
bool dtype_from_storage_type(const std::string& name, DType* out);

// numpy descr strings: "<f4", "|u1", "|b1", ... nullptr for BF16 (numpy has none).
const char* npy_descr(DType d);
bool dtype_from_npy_descr(const std::string& descr, DType* out);

}  // namespace idiff
