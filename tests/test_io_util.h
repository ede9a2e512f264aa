// Helpers of the io tests (test_io_*.cpp): running the interop scripts of tests/py with
// the venv's Python, bitwise tensor comparison, raw file bytes, and FileError checks.
#pragma once

#include "test_util.h"

#include "idiff/common/error.h"
#include "idiff/io/tensor_map.h"

#include <ATen/ATen.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace idiff::test {

// Same dtype, same sizes and the same bytes, element by element (NaNs and -0.0 included).
inline ::testing::AssertionResult same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type()) {
    return ::testing::AssertionFailure()
           << "dtypes differ: " << a.scalar_type() << " vs " << b.scalar_type();
  }
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  const at::Tensor ca = a.contiguous().cpu(), cb = b.contiguous().cpu();
  if (ca.nbytes() && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) != 0) {
    return ::testing::AssertionFailure() << "values differ";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult same_maps(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " tensors";
  for (const auto& [name, t] : a) {
    if (!b.contains(name)) return ::testing::AssertionFailure() << "'" << name << "' missing";
    auto r = same_bits(t, b.at(name));
    if (!r) return r << " for '" << name << "'";
  }
  return ::testing::AssertionSuccess();
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Runs f and requires a FileError whose message contains every one of `needles`.
template <typename F>
::testing::AssertionResult throws_file_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
  } catch (const FileError& e) {
    const std::string msg = e.what();
    for (const auto& n : needles) {
      if (msg.find(n) == std::string::npos) {
        return ::testing::AssertionFailure() << "message lacks '" << n << "': " << msg;
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw something other than FileError: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace idiff::test
