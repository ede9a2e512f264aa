// PyTorch .pt files: the fixture written by PyTorch 1.13, round trips with the Python side
// of the torch wheel in both directions (state dicts of every dtype, views, shared storages,
// nn.Parameter, pickle protocol 4, an AdamW state), the zip layout torch.save writes, and
// atomic replacement.
#include "test_io_util.h"

#include "idiff/io/pt_file.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <dirent.h>

#include <cmath>
#include <limits>

namespace idiff {
namespace {

using test::read_bytes;
using test::run_python_script;
using test::same_bits;
using test::same_maps;
using test::TempDir;
using test::throws_file_error;

// The tensors tests/py/check_pt_from_cpp.py knows: every dtype, a 0-d and an empty tensor,
// a transposed view (strides 1, 3) and two overlapping views of one storage.
TensorMap mixed_tensors() {
  TensorMap m;
  const at::Tensor base = at::arange(12, at::kFloat).reshape({4, 3}) / 7.0;
  m.insert("f32", base.clone());
  m.insert("f64", at::arange(6, at::kDouble).reshape({2, 3}) / 3.0);
  m.insert("f16", (at::arange(5, at::kFloat) / 3.0).to(at::kHalf));
  m.insert("bf16", (at::arange(8, at::kFloat) / 3.0).reshape({2, 2, 2}).to(at::kBFloat16));
  m.insert("i64", at::tensor({-(int64_t{1} << 40), int64_t{-1}, int64_t{0}, int64_t{1} << 40}));
  m.insert("i32", at::tensor({-7, 0, 7}, at::kInt));
  m.insert("i16", at::tensor({-300, 300}, at::kInt).to(at::kShort));
  m.insert("i8", at::tensor({-128, 127}, at::kInt).to(at::kChar));
  m.insert("u8", at::arange(0, 256, 17, at::kInt).to(at::kByte));
  m.insert("bool", at::tensor({1, 0, 1}, at::kInt).to(at::kBool));
  m.insert("scalar", at::scalar_tensor(3.5));
  m.insert("empty", at::zeros({0, 3}));
  m.insert("view_t", base.t());
  const at::Tensor flat = at::arange(12, at::kFloat);
  m.insert("shared_a", flat.slice(0, 0, 6).view({2, 3}));
  m.insert("shared_b", flat.slice(0, 4, 10));
  return m;
}

TEST(PtRead, Torch113FixtureEqualsSafetensorsBitForBit) {
  const TensorMap pt = read_pt_state_dict(test::data_path("unet_tiny.weights.pt"));
  const TensorMap st = read_safetensors(test::data_path("unet_tiny.weights.safetensors"));
  EXPECT_EQ(pt.size(), 222u);
  EXPECT_TRUE(same_maps(pt, st));
  // The same through the format-sniffing entry point.
  EXPECT_TRUE(same_maps(load_tensor_file(test::data_path("unet_tiny.weights.pt")), st));
}

TEST(PtRead, LoadsIntoTheModelOrListsEveryMismatch) {
  const std::string path = test::data_path("unet_tiny.weights.pt");
  const TensorMap sd = read_pt_state_dict(path);
  ModelConfig cfg = test::model_config_from_flags(test::load_json("unet_tiny.json")["flags"]);
  UNetModel model = create_model(cfg);
  load_state_dict(*model, sd, path);
  EXPECT_TRUE(same_bits(state_dict(*model).at("out.2.weight"), sd.at("out.2.weight")));
  // Wrong flags: every difference in one error, with the way to find the right flags.
  cfg.learn_sigma = false;
  cfg.class_cond = true;
  UNetModel wrong = create_model(cfg);
  EXPECT_TRUE(throws_file_error([&] { load_state_dict(*wrong, sd, path); },
                                {"missing keys (1): label_emb.weight", "mis-shaped keys (2)",
                                 "out.2.weight", "out.2.bias", "idiff info"}));
}

TEST(PtInterop, TorchSaveFilesReadExactly) {
  TempDir dir;
  const auto r = run_python_script("write_pt_fixtures.py", {dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const TensorMap expected = read_safetensors(dir.file("expected_mixed.safetensors"));
  for (const std::string name : {"mixed.pt", "proto4.pt", "legacy.pt"}) {
    const TensorMap sd = read_pt_state_dict(dir.file(name));
    ASSERT_EQ(sd.size(), expected.size()) << name;
    size_t i = 0;
    for (const auto& [key, t] : sd) {
      EXPECT_EQ(key, expected.entries()[i++].first) << name << ": order";
      EXPECT_TRUE(same_bits(t, expected.at(key))) << name << ": " << key;
    }
    // The view keeps its strides and shares base's storage (f32 was saved as a clone).
    EXPECT_EQ(sd.at("view_t").strides().vec(), (std::vector<int64_t>{1, 3})) << name;
    // Two views of one storage are one storage here too, at their offsets.
    EXPECT_TRUE(sd.at("shared_a").storage().is_alias_of(sd.at("shared_b").storage())) << name;
    EXPECT_EQ(sd.at("shared_b").storage_offset(), 4) << name;
    EXPECT_EQ(sd.at("scalar").dim(), 0) << name;
  }
  // A real module's state_dict() carries _metadata (set with BUILD): tolerated.
  EXPECT_TRUE(same_maps(read_pt_state_dict(dir.file("module.pt")),
                        read_safetensors(dir.file("expected_module.safetensors"))));

  // AdamW's state_dict(): int keys, a 0-d step tensor, floats, a tuple, None and bools.
  const PickleValue opt = read_pt(dir.file("opt.pt"));
  const TensorMap opt_expected = read_safetensors(dir.file("expected_opt.safetensors"));
  ASSERT_EQ(opt.at("state").size(), 2u);
  for (int64_t i = 0; i < 2; ++i) {
    for (const std::string k : {"step", "exp_avg", "exp_avg_sq"}) {
      EXPECT_TRUE(
          same_bits(to_tensor(opt.at("state").at(i).at(k)), opt_expected.at(str(i, ".", k))))
          << i << k;
    }
  }
  const PickleValue& group = opt.at("param_groups").at(0);
  EXPECT_EQ(group.at("lr").as_float(), 1e-4);
  EXPECT_EQ(group.at("betas").kind(), PickleValue::Kind::Tuple);
  EXPECT_EQ(group.at("betas").at(1).as_float(), 0.999);
  EXPECT_EQ(group.at("eps").as_float(), 1e-8);
  EXPECT_FALSE(group.at("amsgrad").as_bool());
  EXPECT_TRUE(group.at("foreach").is_none());
  EXPECT_EQ(group.at("params").at(1).as_int(), 1);
  EXPECT_TRUE(throws_file_error([&] { read_pt_state_dict(dir.file("opt.pt")); },
                                {"opt.pt", "not a flat state dict", "'state'", "'param_groups'"}));

  // The legacy format reads through load_tensor_file too; cut short, it is refused.
  EXPECT_TRUE(
      same_maps(load_tensor_file(dir.file("legacy.pt")), read_pt_state_dict(dir.file("mixed.pt"))));
  const std::string legacy = read_bytes(dir.file("legacy.pt"));
  for (size_t cut : {size_t{10}, legacy.size() / 2, legacy.size() - 1}) {
    test::write_bytes(dir.file("cut.pt"), legacy.substr(0, cut));
    EXPECT_TRUE(throws_file_error([&] { read_pt(dir.file("cut.pt")); }, {"cut.pt"})) << cut;
  }
  test::write_bytes(dir.file("long.pt"), legacy + "x");
  EXPECT_TRUE(
      throws_file_error([&] { read_pt(dir.file("long.pt")); }, {"long.pt", "unexpected bytes"}));
  EXPECT_TRUE(throws_file_error([&] { read_pt(dir.file("legacy_huge.pt")); },
                                {"legacy_huge.pt", "1099511627776 elements", "more than"}));
  // A pickle that would run os.system is refused, saying why.
  EXPECT_TRUE(throws_file_error([&] { read_pt(dir.file("evil.pt")); },
                                {"evil.pt", "posix.system", "not allowed"}));
}

TEST(PtInterop, IdiffFilesLoadInTorchWithWeightsOnly) {
  TempDir dir;
  const TensorMap m = mixed_tensors();
  write_pt(dir.file("mixed.pt"), m);
  write_safetensors(dir.file("expected.safetensors"), m);
  auto r = run_python_script("check_pt_from_cpp.py",
                             {dir.file("mixed.pt"), dir.file("expected.safetensors")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  // The UNet fixture converted to .pt: every reference key, shape and value.
  const std::string unet = test::data_path("unet_tiny.weights.safetensors");
  write_pt(dir.file("unet.pt"), read_safetensors(unet));
  r = run_python_script("check_pt_from_cpp.py", {dir.file("unet.pt"), unet});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST(PtInterop, OptimizerStateLoadsIntoTorchAdamW) {
  // What a training checkpoint's opt%06d.pt holds: AdamW's state_dict() layout.
  TempDir dir;
  TensorMap expected;
  PickleValue state = PickleValue::dict();
  const std::vector<std::vector<int64_t>> shapes = {{3, 2}, {4}};
  for (int64_t i = 0; i < 2; ++i) {
    const at::Tensor step = at::scalar_tensor(5.0, at::kFloat);
    const at::Tensor m = at::linspace(-1, 1, at::ones(shapes[i]).numel()).reshape(shapes[i]);
    const at::Tensor v = m * m + 0.5;
    PickleValue s = PickleValue::dict();
    s.set("step", tensor_value(step));
    s.set("exp_avg", tensor_value(m));
    s.set("exp_avg_sq", tensor_value(v));
    state.set(PickleValue::integer(i), std::move(s));
    expected.insert(str(i, ".step"), step);
    expected.insert(str(i, ".exp_avg"), m);
    expected.insert(str(i, ".exp_avg_sq"), v);
  }
  PickleValue group = PickleValue::dict();
  group.set("lr", PickleValue::real(1e-4));
  group.set("betas", PickleValue::tuple({PickleValue::real(0.9), PickleValue::real(0.999)}));
  group.set("eps", PickleValue::real(1e-8));
  group.set("weight_decay", PickleValue::real(0.0));
  group.set("amsgrad", PickleValue::boolean(false));
  group.set("foreach", PickleValue::none());
  group.set("maximize", PickleValue::boolean(false));
  group.set("capturable", PickleValue::boolean(false));
  group.set("differentiable", PickleValue::boolean(false));
  group.set("fused", PickleValue::none());
  group.set("params", PickleValue::list({PickleValue::integer(0), PickleValue::integer(1)}));
  PickleValue sd = PickleValue::dict();
  sd.set("state", std::move(state));
  sd.set("param_groups", PickleValue::list({std::move(group)}));
  write_pt(dir.file("opt.pt"), sd);
  write_safetensors(dir.file("expected.safetensors"), expected);
  const auto r = run_python_script("check_opt_from_cpp.py",
                                   {dir.file("opt.pt"), dir.file("expected.safetensors")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;

  // And back: the tree reads as written.
  const PickleValue back = read_pt(dir.file("opt.pt"));
  EXPECT_EQ(back.repr(20), sd.repr(20));
  EXPECT_TRUE(
      same_bits(to_tensor(back.at("state").at(1).at("exp_avg_sq")), expected.at("1.exp_avg_sq")));
}

TEST(PtWrite, ValueTreesRoundTrip) {
  TempDir dir;
  PickleValue v = PickleValue::ordered_dict();
  const std::vector<int64_t> ints = {0,
                                     1,
                                     255,
                                     256,
                                     65535,
                                     65536,
                                     -1,
                                     -129,
                                     INT32_MAX,
                                     INT32_MIN,
                                     int64_t{INT32_MAX} + 1,
                                     int64_t{INT32_MIN} - 1,
                                     int64_t{1} << 40,
                                     -(int64_t{1} << 55),
                                     INT64_MAX,
                                     INT64_MIN};
  PickleValue int_list = PickleValue::list();
  for (int64_t i : ints) int_list.push_back(PickleValue::integer(i));
  v.set("ints", int_list);
  v.set("floats", PickleValue::tuple({PickleValue::real(-0.0), PickleValue::real(1e-300),
                                      PickleValue::real(std::numeric_limits<double>::infinity()),
                                      PickleValue::real(0.1)}));
  v.set("text", PickleValue::string("naïve ✓"));
  v.set("empty", PickleValue::tuple());
  v.set("nested", PickleValue::list({PickleValue::dict(), PickleValue::list(), PickleValue::none(),
                                     PickleValue::boolean(true)}));
  PickleValue by_int = PickleValue::dict();
  by_int.set(PickleValue::integer(-3), PickleValue::string("minus three"));
  by_int.set(PickleValue::integer(1), PickleValue::string("one"));
  v.set("by_int", by_int);
  const at::Tensor t = at::arange(10, at::kFloat);
  v.set("t1", tensor_value(t.slice(0, 2, 5)));
  v.set("t2", tensor_value(t.slice(0, 6, 10)));
  write_pt(dir.file("v.pt"), v);

  const PickleValue back = read_pt(dir.file("v.pt"));
  EXPECT_TRUE(back.is_ordered_dict());
  EXPECT_EQ(back.repr(100), v.repr(100));
  for (size_t i = 0; i < ints.size(); ++i)
    EXPECT_EQ(back.at("ints").at(static_cast<int64_t>(i)).as_int(), ints[i]);
  EXPECT_TRUE(std::signbit(back.at("floats").at(0).as_float()));
  EXPECT_EQ(back.at("floats").at(1).as_float(), 1e-300);
  EXPECT_EQ(back.at("floats").at(3).as_float(), 0.1);
  EXPECT_EQ(back.at("text").as_string(), "naïve ✓");
  EXPECT_EQ(back.at("by_int").at(-3).as_string(), "minus three");
  // Views of one tensor are written once and come back sharing it.
  StorageCache cache;
  const at::Tensor t1 = to_tensor(back.at("t1"), &cache), t2 = to_tensor(back.at("t2"), &cache);
  EXPECT_TRUE(t1.storage().is_alias_of(t2.storage()));
  EXPECT_EQ(t2.storage_offset(), 6);
  EXPECT_TRUE(same_bits(t2, t.slice(0, 6, 10)));
  EXPECT_EQ(back.at("t1").as_tensor().storage->nbytes, 40u);

  // Too deep to write.
  PickleValue deep = PickleValue::list();
  for (int i = 0; i < kMaxPickleDepth + 1; ++i) deep = PickleValue::list({deep});
  EXPECT_TRUE(throws_file_error([&] { write_pt(dir.file("deep.pt"), deep); }, {"deeper"}));
}

// The local file headers of a zip archive: name -> offset of the record's data.
std::map<std::string, uint64_t> data_offsets(const std::string& bytes) {
  std::map<std::string, uint64_t> out;
  size_t pos = 0;
  auto u16 = [&](size_t at) {
    return uint64_t{uint8_t(bytes[at])} | uint64_t{uint8_t(bytes[at + 1])} << 8;
  };
  auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
  while (pos + 30 <= bytes.size() && u32(pos) == 0x04034b50) {
    const uint64_t method = u16(pos + 8), size = u32(pos + 18), name_len = u16(pos + 26),
                   extra = u16(pos + 28);
    EXPECT_EQ(method, 0u) << "records are stored";
    const std::string name = bytes.substr(pos + 30, name_len);
    out[name] = pos + 30 + name_len + extra;
    pos = out[name] + size;
  }
  return out;
}

TEST(PtWrite, ZipLayoutIsTorchSaves) {
  TempDir dir;
  write_pt(dir.file("m.pt"), mixed_tensors());
  const auto offsets = data_offsets(read_bytes(dir.file("m.pt")));
  for (const std::string name :
       {"archive/data.pkl", "archive/byteorder", "archive/version", "archive/data/0",
        "archive/.format_version", "archive/.storage_alignment"}) {
    EXPECT_TRUE(offsets.count(name)) << name;
  }
  // One record per storage: 15 tensors, 14 storages (shared_a and shared_b share one).
  size_t storages = 0;
  for (const auto& [name, offset] : offsets) {
    EXPECT_EQ(offset % 64, 0u) << name << " data at " << offset;
    storages += name.rfind("archive/data/", 0) == 0;
  }
  EXPECT_EQ(storages, 14u);
  EXPECT_EQ(read_bytes(dir.file("m.pt")).substr(offsets.at("archive/byteorder"), 6), "little");
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  if (DIR* d = opendir(path.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(PtWrite, ReplacesFilesAtomically) {
  TempDir dir;
  const std::string path = dir.file("ckpt.pt");
  TensorMap a;
  a.insert("w", at::ones({3}));
  write_pt(path, a);
  const std::string before = read_bytes(path);
  // A save that fails halfway (a dtype .pt files cannot hold) leaves the old file whole
  // and no temporary file behind.
  TensorMap bad;
  bad.insert("w", at::ones({3}));
  bad.insert("z", at::ones({2}, at::kComplexFloat));
  EXPECT_TRUE(throws_file_error([&] { write_pt(path, bad); }, {"ComplexFloat"}));
  EXPECT_TRUE(throws_file_error([&] { save_tensor_file(dir.file("x.safetensors"), bad); },
                                {"ComplexFloat"}));
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"ckpt.pt"});
  // A successful save replaces it.
  a.insert("w", at::zeros({3}));
  save_tensor_file(path, a);
  EXPECT_TRUE(same_bits(read_pt_state_dict(path).at("w"), at::zeros({3})));
  EXPECT_EQ(list_dir(dir.path()), std::vector<std::string>{"ckpt.pt"});
  // Into a folder that does not exist: an error naming it.
  EXPECT_TRUE(
      throws_file_error([&] { write_pt(dir.file("no/such/dir/x.pt"), a); }, {"no/such/dir"}));
}

}  // namespace
}  // namespace idiff
