// Broken and hostile tensor files: each must be a FileError that says what is wrong, never
// a crash, a hang, code execution or an allocation the file cannot back. Pickles are built
// here byte by byte (opcodes as in Lib/pickletools.py) and wrapped in torch.save's zip layout.
#include "test_io_util.h"

#include "idiff/io/npz.h"
#include "idiff/io/pt_file.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/io/zip_archive.h"

namespace idiff {
namespace {

using test::read_bytes;
using test::TempDir;
using test::throws_file_error;
using test::write_bytes;

std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}
std::string unicode(const std::string& s) {
  return "X" + le(s.size(), 4) + s;
}
std::string int32(int64_t v) {
  return "J" + le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
}
std::string long8(int64_t v) {
  return std::string("\x8a\x08", 2) + le(static_cast<uint64_t>(v), 8);
}
std::string ints_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (int64_t x : v) s += int32(x);
  return s + "t";
}
const std::string kProto2("\x80\x02", 2);
const std::string kFalse("\x89", 1);

struct TensorSpec {
  std::string storage_type = "FloatStorage";
  std::string key = "0";
  std::string numel = int32(4);
  int64_t offset = 0;
  std::vector<int64_t> sizes = {4}, strides = {1};
  std::string hooks = "ccollections\nOrderedDict\n)R";
};

// _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, sizes, strides, False,
// hooks)
std::string tensor_ops(const TensorSpec& t) {
  return "ctorch._utils\n_rebuild_tensor_v2\n((" + unicode("storage") + "ctorch\n" +
         t.storage_type + "\n" + unicode(t.key) + unicode("cpu") + t.numel + "tQ" +
         int32(t.offset) + ints_tuple(t.sizes) + ints_tuple(t.strides) + kFalse + t.hooks + "tR";
}

// {'w': tensor}
std::string state_dict_pickle(const TensorSpec& t) {
  return kProto2 + "}(" + unicode("w") + tensor_ops(t) + "u.";
}

class HostilePt : public ::testing::Test {
 protected:
  // A torch.save-shaped zip: archive/data.pkl plus the given records.
  std::string pt(const std::string& pickle, const std::map<std::string, std::string>& records = {},
                 const std::string& name = "t.pt") {
    const std::string path = dir_.file(name);
    ZipWriter zip(path);
    zip.add_copy("archive/data.pkl", pickle);
    for (const auto& [k, v] : records) zip.add_copy(k, v);
    zip.close();
    return path;
  }
  ::testing::AssertionResult refused(const std::string& pickle,
                                     const std::vector<std::string>& needles,
                                     const std::map<std::string, std::string>& records = {}) {
    const std::string path = pt(pickle, records);
    return throws_file_error([&] { read_pt(path); }, needles);
  }
  const std::map<std::string, std::string> kFourFloats = {
      {"archive/data/0", std::string(16, '\0')}};
  TempDir dir_;
};

TEST_F(HostilePt, ValidHandMadePickleReads) {
  // The builder itself is right: this one loads.
  const std::string path = pt(state_dict_pickle(TensorSpec()), kFourFloats);
  EXPECT_TRUE(test::same_bits(read_pt_state_dict(path).at("w"), at::zeros({4})));
}

TEST_F(HostilePt, GlobalsOutsideTheAllowlist) {
  EXPECT_TRUE(refused(kProto2 + "cos\nsystem\n" + unicode("touch pwned") + "\x85R.",
                      {"t.pt", "'os.system'", "not allowed"}));
  // Protocol 4 spells globals with STACK_GLOBAL.
  EXPECT_TRUE(refused(std::string("\x80\x04\x8c\x08") + "builtins" + "\x8c\x04" + "eval\x93" +
                          unicode("1") + "\x85R.",
                      {"'builtins.eval'"}));
  EXPECT_TRUE(refused(kProto2 + "ctorch\nload\n.", {"'torch.load'"}));
  EXPECT_TRUE(refused(kProto2 + "ctorch._utils\n_rebuild_qtensor\n.", {"_rebuild_qtensor"}));
  // An allowed name called in a way torch.save never does.
  EXPECT_TRUE(refused(kProto2 + "ccollections\nOrderedDict\n" + unicode("x") + "\x85R.",
                      {"without arguments"}));
  EXPECT_TRUE(refused(kProto2 + "ctorch\nFloatStorage\n)R.", {"persistent ids"}));
}

TEST_F(HostilePt, OpcodesOutsideTheSubset) {
  EXPECT_TRUE(refused(kProto2 + "ios\nsystem\n.", {"INST"}));
  EXPECT_TRUE(refused(kProto2 + "B" + le(3, 4) + "abc.", {"BINBYTES"}));
  EXPECT_TRUE(refused(kProto2 + "\x81.", {"NEWOBJ"}));
  EXPECT_TRUE(refused(kProto2 + "Pfoo\n.", {"PERSID"}));
  EXPECT_TRUE(refused(kProto2 + "\xff.", {"0xff"}));
  EXPECT_TRUE(refused(std::string("\x80\x09.", 3), {"protocol 9"}));
}

TEST_F(HostilePt, MalformedPickles) {
  EXPECT_TRUE(refused("", {"empty"}));
  EXPECT_TRUE(refused(kProto2 + "N", {"truncated"}));
  EXPECT_TRUE(refused(state_dict_pickle(TensorSpec()).substr(0, 60), {"truncated"}, kFourFloats));
  EXPECT_TRUE(refused(kProto2 + "R.", {"underflow"}));
  EXPECT_TRUE(refused(kProto2 + "NN.", {"STOP with 2"}));
  EXPECT_TRUE(refused(kProto2 + "h\x05.", {"memo entry 5"}));
  EXPECT_TRUE(refused(kProto2 + "Nu.", {"no MARK"}));
  EXPECT_TRUE(refused(kProto2 + "N(Na.", {"underflow"}));  // APPEND cannot reach below a MARK
  EXPECT_TRUE(refused(kProto2 + "NNa.", {"APPEND applied to a None"}));
  EXPECT_TRUE(refused(kProto2 + "\x8a\x09" + std::string(9, '\1') + ".", {"64 bits"}));
  EXPECT_TRUE(
      refused(kProto2 + "}G" + std::string(8, '\0') + "Ns.", {"dict keys must be str or int"}));
  // A declared string of 4 GiB in a tiny file: refused before anything is allocated.
  EXPECT_TRUE(refused(kProto2 + "X\xf0\xff\xff\xff" + "abc.", {"truncated", "4294967280"}));
  EXPECT_TRUE(refused(kProto2 + "Q.", {"underflow"}));
  EXPECT_TRUE(refused(kProto2 + unicode("x") + "Q.", {"persistent id"}));
}

TEST_F(HostilePt, DeepNestingSelfReferenceAndSharingBombs) {
  // 100,000 nested lists built without recursion in the file.
  EXPECT_TRUE(refused(kProto2 + std::string(100000, ']') + std::string(99999, 'a') + ".",
                      {"deeper than 100"}));
  // A list that contains itself.
  EXPECT_TRUE(refused(kProto2 + std::string("]q\0h\0a.", 7), {"contains itself"}));
  // 30 levels of a list holding ten references to the level below: 10^30 values unfolded.
  std::string bomb = kProto2 + std::string("]q\0", 3);
  for (int i = 0; i < 30; ++i) {
    bomb += "0](";
    for (int j = 0; j < 10; ++j) bomb += std::string("h\x00", 2);
    bomb += std::string("eq\x00", 3);
  }
  EXPECT_TRUE(refused(bomb + ".", {"unfold"}));
}

TEST_F(HostilePt, TensorsThatDoNotFitTheirStorage) {
  TensorSpec t;
  EXPECT_TRUE(refused(state_dict_pickle(t), {"no record archive/data/0"}));
  EXPECT_TRUE(refused(state_dict_pickle(t), {"declares 4 F32 elements (16 bytes)", "holds 12"},
                      {{"archive/data/0", std::string(12, '\0')}}));
  t.numel =
      long8(int64_t{1} << 60);  // a huge declared storage: compared with the record, not allocated
  EXPECT_TRUE(refused(state_dict_pickle(t), {"declares 1152921504606846976"}, kFourFloats));
  t = TensorSpec();
  t.sizes = {5};
  EXPECT_TRUE(
      refused(state_dict_pickle(t), {"reaches past its storage of 4 elements"}, kFourFloats));
  t.sizes = {int64_t{1} << 30, int64_t{1} << 30};
  t.strides = {int64_t{1} << 30, 1};
  EXPECT_TRUE(refused(state_dict_pickle(t), {"storage"}, kFourFloats));
  t = TensorSpec();
  t.strides = {-1};
  EXPECT_TRUE(refused(state_dict_pickle(t), {"negative"}, kFourFloats));
  t = TensorSpec();
  t.strides = {1, 1};
  EXPECT_TRUE(refused(state_dict_pickle(t), {"ranks must match"}, kFourFloats));
  t = TensorSpec();
  t.offset = 9;
  EXPECT_TRUE(refused(state_dict_pickle(t), {"offset 9"}, kFourFloats));
  t = TensorSpec();
  t.storage_type = "ComplexFloatStorage";
  EXPECT_TRUE(refused(state_dict_pickle(t), {"torch.ComplexFloatStorage"}, kFourFloats));
  t = TensorSpec();
  t.hooks = "}" + unicode("h") + "Ns";
  EXPECT_TRUE(refused(state_dict_pickle(t), {"backward hooks"}, kFourFloats));
  // One storage key used as two dtypes.
  TensorSpec a, b;
  b.storage_type = "IntStorage";
  EXPECT_TRUE(
      refused(kProto2 + "}(" + unicode("a") + tensor_ops(a) + unicode("b") + tensor_ops(b) + "u.",
              {"used as both F32 and I32"}, kFourFloats));
}

// A few hundred bytes declaring 2^28 (or 2^40) elements through stride-0 views of a
// 4-element storage: refused before anything is allocated, whatever reads the file.
TEST_F(HostilePt, ExpandingViewsAreRefused) {
  TensorSpec t;
  t.sizes = {int64_t{1} << 28};
  t.strides = {0};
  EXPECT_TRUE(refused(state_dict_pickle(t),
                      {"views 268435456 elements of a storage of 4", "an expanding view"},
                      kFourFloats));
  const std::string path = pt(state_dict_pickle(t), kFourFloats, "expand.pt");
  EXPECT_TRUE(throws_file_error([&] { load_tensor_file(path); }, {"expand.pt", "expanding view"}));
  t.sizes = {int64_t{1} << 20, int64_t{1} << 20};
  t.strides = {0, 0};
  EXPECT_TRUE(refused(state_dict_pickle(t), {"views 1099511627776 elements"}, kFourFloats));
  // A view within its storage (a transpose) still reads.
  t.sizes = {2, 2};
  t.strides = {1, 2};
  EXPECT_TRUE(
      test::same_bits(read_pt_state_dict(pt(state_dict_pickle(t), kFourFloats, "tr.pt")).at("w"),
                      at::zeros({2, 2})));
  // Writing an expanded tensor stores a copy, which reads back.
  TensorMap m;
  m.insert("e", at::arange(3, at::kFloat).expand({4, 3}));
  save_tensor_file(dir_.file("e.pt"), m);
  EXPECT_TRUE(test::same_bits(load_tensor_file(dir_.file("e.pt")).at("e"),
                              at::arange(3, at::kFloat).expand({4, 3}).contiguous()));
}

TEST_F(HostilePt, BrokenArchives) {
  const std::string fixture = read_bytes(test::data_path("unet_tiny.weights.pt"));
  for (size_t cut :
       {size_t{3}, size_t{100}, size_t{5000}, fixture.size() / 2, fixture.size() - 1}) {
    const std::string path = dir_.file("cut.pt");
    write_bytes(path, fixture.substr(0, cut));
    EXPECT_TRUE(throws_file_error([&] { read_pt(path); }, {"cut.pt"})) << "cut at " << cut;
    EXPECT_TRUE(throws_file_error([&] { load_tensor_file(path); }, {"cut.pt"})) << "cut at " << cut;
  }
  // A flipped byte in a tensor's data fails the record's CRC.
  std::string flipped = fixture;
  flipped[3000000] = static_cast<char>(flipped[3000000] ^ 0x40);
  write_bytes(dir_.file("flip.pt"), flipped);
  EXPECT_TRUE(throws_file_error([&] { read_pt(dir_.file("flip.pt")); }, {"flip.pt", "corrupt"}));

  write_bytes(dir_.file("text.pt"), "this is not a checkpoint, it is a text file\n");
  EXPECT_TRUE(
      throws_file_error([&] { read_pt(dir_.file("text.pt")); }, {"text.pt", "not a PyTorch file"}));
  EXPECT_TRUE(
      throws_file_error([&] { load_tensor_file(dir_.file("text.pt")); }, {"not a tensor file"}));
  write_bytes(dir_.file("empty.pt"), "");
  EXPECT_TRUE(throws_file_error([&] { load_tensor_file(dir_.file("empty.pt")); }, {"empty.pt"}));
  EXPECT_TRUE(
      throws_file_error([&] { read_pt(dir_.file("missing.pt")); }, {"missing.pt", "cannot open"}));

  auto zip_of = [&](const std::string& name, const std::map<std::string, std::string>& records) {
    ZipWriter zip(dir_.file(name));
    for (const auto& [k, v] : records) zip.add_copy(k, v);
    zip.close();
    return dir_.file(name);
  };
  EXPECT_TRUE(throws_file_error(
      [&] {
        read_pt(zip_of("nopkl.pt", {{"a/readme.txt", "hi"}}));
      },
      {"without a <folder>/data.pkl"}));
  EXPECT_TRUE(throws_file_error(
      [&] {
        read_pt(zip_of("ts.pt", {{"m/constants.pkl", ""}, {"m/code/m.py", ""}}));
      },
      {"TorchScript"}));
  EXPECT_TRUE(throws_file_error(
      [&] {
        read_pt(zip_of("two.pt", {{"a/data.pkl", kProto2 + "N."}, {"b/data.pkl", kProto2 + "N."}}));
      },
      {"2 data.pkl"}));
  EXPECT_TRUE(throws_file_error(
      [&] {
        read_pt(zip_of("be.pt", {{"a/data.pkl", kProto2 + "N."}, {"a/byteorder", "big"}}));
      },
      {"byteorder is 'big'"}));
  // Any folder name works.
  EXPECT_TRUE(
      read_pt(zip_of("any.pt", {{"whatever_name/data.pkl", kProto2 + "K\x07."}})).as_int() == 7);
}

// A safetensors file from a header text and data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le(header.size(), 8) + header + data;
}

TEST(HostileSafetensors, BadHeaders) {
  TempDir dir;
  auto refused = [&](const std::string& bytes, const std::vector<std::string>& needles) {
    write_bytes(dir.file("x.safetensors"), bytes);
    return throws_file_error([&] { read_safetensors(dir.file("x.safetensors")); }, needles);
  };
  const std::string f4 = R"("dtype":"F32","shape":[2])";
  EXPECT_TRUE(refused("abc", {"shorter than the 8-byte header length"}));
  EXPECT_TRUE(refused(le(1000, 8) + "{}", {"declared header of 1000 bytes"}));
  EXPECT_TRUE(refused(le(uint64_t{1} << 62, 8) + "{}", {"declared header"}));
  EXPECT_TRUE(refused(safetensors_bytes("[1,2]", ""), {"does not start with '{'"}));
  EXPECT_TRUE(refused(safetensors_bytes("{\"a\":", ""), {"not valid JSON"}));
  EXPECT_TRUE(refused(
      safetensors_bytes(R"({"a":{)" + f4 + R"(,"data_offsets":[0,8]}})", std::string(4, '\0')),
      {"'a'", "outside the 4-byte data section"}));
  EXPECT_TRUE(refused(safetensors_bytes(R"({"a":{)" + f4 + R"(,"data_offsets":[0,8]},"b":{)" + f4 +
                                            R"(,"data_offsets":[4,12]}})",
                                        std::string(12, '\0')),
                      {"overlap"}));
  EXPECT_TRUE(refused(
      safetensors_bytes(R"({"a":{)" + f4 + R"(,"data_offsets":[0,4]}})", std::string(4, '\0')),
      {"holds 4 bytes", "need 8"}));
  EXPECT_TRUE(refused(safetensors_bytes(R"({"a":{)" + f4 + R"(,"data_offsets":[0,8]},"a":{)" + f4 +
                                            R"(,"data_offsets":[8,16]}})",
                                        std::string(16, '\0')),
                      {"'a' appears twice"}));
  EXPECT_TRUE(refused(safetensors_bytes(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})",
                                        std::string(8, '\0')),
                      {"unsupported dtype \"C64\""}));
  EXPECT_TRUE(refused(
      safetensors_bytes(
          R"({"a":{"dtype":"F32","shape":[0,9223372036854775808],"data_offsets":[0,0]}})", ""),
      {"malformed shape"}));
  EXPECT_TRUE(refused(
      safetensors_bytes(
          R"({"a":{"dtype":"F32","shape":[2147483648,2147483648,4],"data_offsets":[0,0]}})", ""),
      {"more than 2^62"}));
  EXPECT_TRUE(
      refused(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", ""),
              {"malformed shape"}));
  EXPECT_TRUE(refused(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", ""),
                      {"needs dtype, shape and data_offsets"}));
  EXPECT_TRUE(refused(safetensors_bytes(R"({"__metadata__":{"k":1}})", ""), {"__metadata__"}));
  // Deeply nested JSON is an error, not a stack overflow.
  EXPECT_TRUE(refused(
      safetensors_bytes("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", ""),
      {"'a'"}));
  // Cut short: the header promises more data than there is.
  const std::string good = read_bytes(test::data_path("unet_tiny.weights.safetensors"));
  EXPECT_TRUE(refused(good.substr(0, good.size() - 1), {"outside"}));
  EXPECT_TRUE(refused(good.substr(0, 100), {"declared header"}));
}

TEST(HostileNpy, BadArrays) {
  TempDir dir;
  auto npy = [](const std::string& dict, const std::string& data) {
    return std::string("\x93NUMPY\x01\x00", 8) + le(dict.size(), 2) + dict + data;
  };
  auto refused = [&](const std::string& bytes, const std::vector<std::string>& needles) {
    write_bytes(dir.file("x.npy"), bytes);
    return throws_file_error([&] { read_npy(dir.file("x.npy")); }, needles);
  };
  EXPECT_TRUE(refused("NUMPY", {"no \\x93NUMPY magic"}));
  EXPECT_TRUE(refused(
      npy("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')),
      {"'>f4' is not supported"}));
  EXPECT_TRUE(refused(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", std::string(8, '\0')),
      {"needs 12 bytes", "holds 8"}));
  EXPECT_TRUE(refused(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", ""),
                      {"structured"}));
  EXPECT_TRUE(refused(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", ""),
      {"too large"}));
  EXPECT_TRUE(refused(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,", ""),
                      {"bad .npy header"}));
  EXPECT_TRUE(refused(npy("{'descr': '<f4', 'shape': (3,), }", ""),
                      {"needs descr, fortran_order and shape"}));
  EXPECT_TRUE(
      refused(npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", std::string(8, '\0')),
              {"'|O'"}));
  EXPECT_TRUE(refused(std::string("\x93NUMPY\x01\x00\xff\x00", 10) + "{", {"does not fit"}));
}

}  // namespace
}  // namespace idiff
