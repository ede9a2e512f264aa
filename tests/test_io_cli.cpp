// `idiff convert` and `idiff info CKPT`, and inferring model flags from state dicts: the
// reference's published models (shapes only) and the fixtures, checked end to end by
// pasting the inferred flags back into `idiff info`.
#include "test_io_util.h"

#include "idiff/io/pt_file.h"
#include "idiff/io/safetensors.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/inspect/summary.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace idiff {
namespace {

using test::run_idiff;
using test::same_maps;
using test::TempDir;

std::vector<std::string> split_flags(const std::string& flags) {
  std::vector<std::string> out;
  std::istringstream in(flags);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

TEST(IdiffConvert, PtToSafetensorsToNpzAndBack) {
  TempDir dir;
  const std::string pt = test::data_path("unet_tiny.weights.pt");
  auto r = run_idiff({"convert", pt, dir.file("w.safetensors")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("222 tensors, 1,679,782 elements"), std::string::npos) << r.out;
  r = run_idiff({"convert", dir.file("w.safetensors"), dir.file("w.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_idiff({"convert", dir.file("w.pt"), dir.file("w.npz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TensorMap original = read_pt_state_dict(pt);
  EXPECT_TRUE(same_maps(read_pt_state_dict(dir.file("w.pt")), original));
  EXPECT_TRUE(same_maps(read_safetensors(dir.file("w.safetensors")), original));
  // The .pt keeps the state-dict order of the original.
  size_t i = 0;
  for (const auto& [name, t] : read_pt_state_dict(dir.file("w.pt")))
    EXPECT_EQ(name, original.entries()[i++].first);
}

TEST(IdiffConvert, Errors) {
  TempDir dir;
  auto r = run_idiff({"convert", test::data_path("unet_tiny.weights.pt"), dir.file("w.bin")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown tensor file extension"), std::string::npos) << r.err;
  r = run_idiff({"convert", dir.file("missing.pt"), dir.file("w.pt")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.pt: cannot open"), std::string::npos) << r.err;
  // The output is checked before the input is read: a folder, a folder that does not exist.
  r = run_idiff({"convert", dir.file("missing.pt"), dir.file("none/w.pt")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("out " + dir.file("none/w.pt") + ": the folder " + dir.file("none") +
                       " does not exist"),
            std::string::npos)
      << r.err;
  std::filesystem::create_directories(dir.file("d.pt"));
  r = run_idiff({"convert", dir.file("missing.pt"), dir.file("d.pt")});
  EXPECT_NE(r.err.find("out " + dir.file("d.pt") + " is a folder; name the file to write"),
            std::string::npos)
      << r.err;
  PickleValue nested = PickleValue::dict();
  nested.set("model",
             state_dict_value(read_safetensors(test::data_path("unet_tiny.weights.safetensors"))));
  nested.set("step", PickleValue::integer(100));
  write_pt(dir.file("nested.pt"), nested);
  r = run_idiff({"convert", dir.file("nested.pt"), dir.file("w.safetensors")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a flat state dict of named tensors (top-level keys: 'model', 'step')"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  // Keys that would climb out of the archive as npz member names are refused, no file left.
  for (const std::string key : {"../../x", "/abs", "a/../../b", "a\\b"}) {
    TensorMap m;
    m.insert(key, at::zeros({2}));
    save_tensor_file(dir.file("odd.safetensors"), m);
    r = run_idiff({"convert", dir.file("odd.safetensors"), dir.file("odd.npz")});
    EXPECT_EQ(r.exit_code, 1) << key;
    EXPECT_NE(r.err.find("not a safe npz member name"), std::string::npos) << key << r.err;
    EXPECT_FALSE(std::ifstream(dir.file("odd.npz")).good()) << key;
  }
}

TEST(IdiffInfo, CheckpointsListKeysAndPasteableFlags) {
  for (const std::string name : {"unet_tiny", "unet_tiny_cc", "sr_tiny"}) {
    const std::string file =
        test::data_path(name + (name == "unet_tiny" ? ".weights.pt" : ".weights.safetensors"));
    auto r = run_idiff({"info", file});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("input_blocks.0.0.weight"), std::string::npos) << name;
    // The summary comes first: the file's line, then the flags, then the tensors.
    EXPECT_EQ(r.out.rfind(file + ": ", 0), 0u) << r.out.substr(0, 200);
    EXPECT_LT(r.out.find("flags: "), r.out.find("input_blocks.0.0.weight")) << name;
    const size_t at = r.out.find("flags: ");
    ASSERT_NE(at, std::string::npos) << r.out;
    const std::string flags = r.out.substr(at + 7, r.out.find('\n', at) - at - 7);
    // Pasted into `idiff info`, the flags build a model of the same size and layout.
    std::vector<std::string> args = {"info"};
    if (name == "sr_tiny") args.push_back("--super_res");
    for (const auto& f : split_flags(flags)) args.push_back(f);
    args.push_back("--keys");
    const auto model = run_idiff(args);
    ASSERT_EQ(model.exit_code, 0) << model.err;
    const TensorMap sd = load_tensor_file(file);
    int64_t total = 0;
    for (const auto& [k, t] : sd) {
      total += t.numel();
      std::ostringstream line;
      line << k << " " << t.sizes() << "\n";
      EXPECT_NE(model.out.find(line.str()), std::string::npos) << name << ": " << line.str();
    }
    EXPECT_NE(model.out.find("parameters: " + with_commas(total)), std::string::npos)
        << name << "\n"
        << model.out;
  }
  auto r = run_idiff({"info", test::data_path("unet_tiny_cc.weights.safetensors")});
  EXPECT_NE(r.out.find("--class_cond True --attention_resolutions 16 --use_scale_shift_norm False"),
            std::string::npos)
      << r.out;
}

TEST(IdiffInfo, NestedPtPrintsItsTree) {
  TempDir dir;
  PickleValue opt = PickleValue::dict();
  PickleValue state = PickleValue::dict();
  PickleValue s0 = PickleValue::dict();
  s0.set("exp_avg", tensor_value(at::zeros({3, 2})));
  state.set(PickleValue::integer(0), s0);
  opt.set("state", state);
  PickleValue group = PickleValue::dict();
  group.set("lr", PickleValue::real(1e-4));
  group.set("params", PickleValue::list({PickleValue::integer(0)}));
  opt.set("param_groups", PickleValue::list({group}));
  write_pt(dir.file("opt.pt"), opt);
  const auto r = run_idiff({"info", dir.file("opt.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("state.0.exp_avg  F32 [3, 2]\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("param_groups.0.lr = 0.0001\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("param_groups.0.params = [0]\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("holding a dict, 1 tensors, 6 elements"), std::string::npos) << r.out;
}

TEST(InferConfig, PublishedModelsFromShapesAlone) {
  // improved-diffusion's released models, then guided-diffusion's (ADM).
  for (const char* file : {"published_configs.json", "adm_published.json"}) {
    const auto configs = test::load_json(file);
    for (auto it = configs.begin(); it != configs.end(); ++it) {
      if (it.value().value("kind", "unet") == "classifier") continue;
      const auto& flags = it.value()["flags"];
      TensorMap sd;  // meta tensors: shapes without memory
      for (const auto& key : it.value()["keys"]) {
        sd.insert(key[0].get<std::string>(),
                  at::empty(key[1].get<std::vector<int64_t>>(), at::device(at::kMeta)));
      }
      const InferredModel m = infer_model_config(sd);
      const ModelConfig want = test::model_config_from_flags(flags);
      const bool sr = flags.contains("large_size");
      ASSERT_TRUE(m.is_unet) << it.key();
      EXPECT_TRUE(m.image_size_known) << it.key();
      EXPECT_EQ(m.super_res, sr) << it.key();
      // The 512 upsampler has the 256 one's levels: its size is not in the weights.
      if (!(sr && want.large_size == 512)) {
        EXPECT_EQ(sr ? m.config.large_size : m.config.image_size,
                  sr ? want.large_size : want.image_size)
            << it.key();
        EXPECT_EQ(m.config.attention_resolutions, want.attention_resolutions) << it.key();
      }
      EXPECT_EQ(m.config.num_channels, want.num_channels) << it.key();
      EXPECT_EQ(m.config.num_res_blocks, want.num_res_blocks) << it.key();
      EXPECT_EQ(m.config.learn_sigma, want.learn_sigma) << it.key();
      EXPECT_EQ(m.config.class_cond, want.class_cond) << it.key();
      EXPECT_EQ(m.config.use_scale_shift_norm, want.use_scale_shift_norm) << it.key();
      EXPECT_EQ(m.config.resblock_updown, want.resblock_updown) << it.key();
    }
  }
}

TEST(InferConfig, OtherStateDictsAreNotUNets) {
  TensorMap sd;
  sd.insert("0.weight", at::zeros({4, 3, 3, 3}));
  EXPECT_FALSE(infer_model_config(sd).is_unet);
  EXPECT_FALSE(infer_model_config(TensorMap()).is_unet);
}

}  // namespace
}  // namespace idiff
