// numpy files: npz written here and read by numpy (np.load) and the other way round, with
// the reference's sample-file layout (arr_0 uint8 NHWC, arr_1 int64 labels), plus .npy
// (C and Fortran order) and safetensors round trips of every dtype.
#include "test_io_util.h"

#include "idiff/io/npz.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/safetensors_format.h"
#include "idiff/io/tensor_file.h"

#include <fstream>

namespace idiff {
namespace {

using test::read_bytes;
using test::run_python_script;
using test::same_bits;
using test::same_maps;
using test::TempDir;
using test::throws_file_error;
using test::write_bytes;

// The arrays of tests/py/npz_roundtrip.py, by the same formulas.
TensorMap npz_arrays() {
  TensorMap m;
  m.insert("arr_0",
           (at::arange(2 * 4 * 5 * 3, at::kLong) % 251).to(at::kByte).reshape({2, 4, 5, 3}));
  m.insert("arr_1", at::arange(2, at::kLong) * 7 - 3);
  m.insert("f32", (at::arange(6, at::kFloat) / 4 - 1).reshape({2, 3}));
  m.insert("f64", at::arange(5, at::kDouble) / 3);
  m.insert("i32", at::arange(-3, 3, at::kInt));
  return m;
}

TEST(Npz, IdiffWritesWhatNumpyLoads) {
  TempDir dir;
  write_npz(dir.file("samples.npz"), npz_arrays());
  const auto r = run_python_script("npz_roundtrip.py", {"check", dir.file("samples.npz")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST(Npz, NumpyWrittenArraysReadExactly) {
  TempDir dir;
  const auto r = run_python_script("npz_roundtrip.py", {"write", dir.file("np.npz")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const TensorMap got = read_npz(dir.file("np.npz"));
  const TensorMap want = npz_arrays();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got.entries()[i].first, want.entries()[i].first);
    EXPECT_TRUE(same_bits(got.entries()[i].second, want.entries()[i].second))
        << want.entries()[i].first;
  }
  EXPECT_EQ(detect_tensor_file(dir.file("np.npz")), TensorFileKind::Npz);
  EXPECT_TRUE(same_maps(load_tensor_file(dir.file("np.npz")), want));
}

TEST(Npz, NpyFilesAndViews) {
  TempDir dir;
  // A transposed view is written in C order.
  const at::Tensor a = at::arange(6, at::kFloat).reshape({2, 3});
  write_npy(dir.file("t.npy"), a.t());
  EXPECT_TRUE(same_bits(read_npy(dir.file("t.npy")), a.t().contiguous()));
  // Fortran order reads as transposed strides: this is np.asfortranarray(arange(6).reshape(2, 3)).
  const std::string dict = "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }";
  std::string f = std::string("\x93NUMPY\x01\x00", 8);
  f += static_cast<char>(dict.size());
  f += '\0';
  f += dict;
  for (int64_t v : {0, 3, 1, 4, 2, 5}) f += std::string(reinterpret_cast<const char*>(&v), 8);
  write_bytes(dir.file("f.npy"), f);
  EXPECT_TRUE(same_bits(read_npy(dir.file("f.npy")).contiguous(),
                        at::arange(6, at::kLong).reshape({2, 3})));
  // Every numpy dtype idiff has; bfloat16 has no numpy twin.
  TensorMap all;
  for (auto s : {at::kDouble, at::kFloat, at::kHalf, at::kLong, at::kInt, at::kShort, at::kChar,
                 at::kByte, at::kBool}) {
    all.insert(std::string(c10::toString(s)), (at::arange(4, at::kFloat) - 1).to(s));
  }
  all.insert("scalar", at::scalar_tensor(2.5));
  all.insert("empty", at::zeros({3, 0}, at::kByte));
  write_npz(dir.file("all.npz"), all);
  EXPECT_TRUE(same_maps(read_npz(dir.file("all.npz")), all));
  TensorMap bf;
  bf.insert("x", at::ones({2}, at::kBFloat16));
  // The file and the array named; nothing is written.
  EXPECT_TRUE(throws_file_error([&] { write_npz(dir.file("bf.npz"), bf); },
                                {dir.file("bf.npz") + ": array 'x' is BF16, which numpy has no "
                                                      "dtype for; write .safetensors or .pt"}));
  EXPECT_FALSE(std::ifstream(dir.file("bf.npz")).good());
}

TEST(Safetensors, EveryDtypeRoundTrips) {
  TempDir dir;
  TensorMap m;
  for (auto s : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16, at::kLong, at::kInt, at::kShort,
                 at::kChar, at::kByte, at::kBool}) {
    m.insert(std::string(c10::toString(s)), (at::arange(6, at::kFloat) - 2).reshape({2, 3}).to(s));
  }
  m.insert("view", at::arange(12, at::kFloat).reshape({3, 4}).t());
  m.insert("scalar", at::scalar_tensor(-1.0, at::kDouble));
  m.insert("empty", at::zeros({0}, at::kHalf));
  write_safetensors(dir.file("m.safetensors"), m);
  const TensorMap back = read_safetensors(dir.file("m.safetensors"));
  EXPECT_TRUE(same_maps(back, m));
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(back.entries()[i].first, m.entries()[i].first);
  EXPECT_EQ(read_safetensors_metadata(dir.file("m.safetensors")).at("format"), "pt");
  // The data section starts 8-byte aligned, as the format's reference writer does.
  const std::string bytes = read_bytes(dir.file("m.safetensors"));
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + header) % 8, 0u);
}

}  // namespace
}  // namespace idiff
