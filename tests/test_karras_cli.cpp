// consistency_models' models from the command line: `idiff sample` with a CM checkpoint in
// consistency_models' layout, from unit noise (--initial_noise) to the reference's samples,
// and the one-line errors of its flags.
#include "test_util.h"

#include "idiff/data/image_grid.h"
#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <fstream>

namespace idiff::test {
namespace {

// The cm_tiny network (seed 41, the fixture's student) written as consistency_models does,
// and the first fixture noise as an --initial_noise file (unit noise, [2, 3, 16, 16]).
struct CmFiles {
  TempDir dir;
  std::string model = dir.file("cm_tiny.safetensors"), noise = dir.file("x_T.safetensors");
  CmFiles() {
    ModelConfig m = model_config_from_flags(load_json("cm_tiny.json")["flags"]);
    m.use_new_attention_order = true;
    UNetModel net = create_model(m);
    set_formula_weights(*net, 41);
    save_tensor_file(model, with_conv2d_attention(state_dict(*net)));
    TensorMap x;
    x.insert("x_T", load_fixture("cm_tiny.samplers.safetensors").at("noise")[0].contiguous());
    save_tensor_file(noise, x);
  }
};

std::vector<std::string> cm_sample_args(const CmFiles& f, const std::string& out,
                                        const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"sample", f.model};
  for (const std::string& a : fixture_flags("cm_tiny")) args.push_back(a);
  for (const char* a :
       {"--image_size", "16", "--attention_resolutions", "8", "--num_samples", "2", "--batch_size",
        "2", "--class", "999,123", "--initial_noise", f.noise.c_str(), "--save_float", "True",
        "--grid_size", "0", "--log_dir", out.c_str()}) {
    args.push_back(a);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

at::Tensor float_samples(const std::string& dir) {
  return load_tensor_file(dir + "/samples_float.safetensors").at("samples");
}

TEST(KarrasCli, SamplesMatchTheReferenceFromUnitNoise) {
  const CmFiles f;
  const TensorMap want = load_fixture("cm_tiny.samplers.safetensors");
  // A consistency model in one call, and EDM's Heun in 18 steps (35 calls).
  const RunResult one = run_idiff(
      cm_sample_args(f, f.dir.file("one"),
                     {"--training_mode", "consistency_distillation", "--sampler", "onestep"}));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.out.find("onestep, 1 steps (1 model calls)"), std::string::npos) << one.out;
  EXPECT_CLOSE(float_samples(f.dir.file("one")), want.at("onestep.sample"), 1e-4);
  const RunResult heun =
      run_idiff(cm_sample_args(f, f.dir.file("heun"), {"--training_mode", "edm", "--steps", "18"}));
  ASSERT_EQ(heun.exit_code, 0) << heun.err;
  EXPECT_NE(heun.out.find("defaults: --sampler heun"), std::string::npos) << heun.err;
  EXPECT_CLOSE(float_samples(f.dir.file("heun")), want.at("heun.sample"), 1e-4);
  // The released CD commands' multistep with --ts: two model calls.
  const RunResult multi = run_idiff(
      cm_sample_args(f, f.dir.file("multi"),
                     {"--training_mode", "consistency_distillation", "--sampler", "multistep",
                      "--ts", "0,22,39", "--steps", "40", "--generator", "determ-indiv"}));
  ASSERT_EQ(multi.exit_code, 0) << multi.err;
  EXPECT_NE(multi.out.find("multistep, 2 steps (2 model calls)"), std::string::npos) << multi.err;
}

// `idiff info` tells a consistency_models file from the other families' and says which
// flags it implies.
TEST(KarrasCli, InfoTellsAConsistencyModelsFile) {
  const CmFiles f;
  const RunResult r = run_idiff({"info", f.model});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--training_mode edm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a consistency_models file"), std::string::npos) << r.out;
  const RunResult adm = run_idiff({"info", data_path("unet_tiny.weights.safetensors")});
  EXPECT_EQ(adm.out.find("--training_mode"), std::string::npos) << adm.out;
}

// scripts/launch.sh's sampling flags of every released file paste unchanged: the command
// gets as far as the (missing) checkpoint.
TEST(KarrasCli, TheReleasedFilesFlagsPasteUnchanged) {
  const auto published = load_json("cm_published.json");
  for (const auto& [name, entry] : published["checkpoints"].items()) {
    std::vector<std::string> args = {"sample"};
    for (const std::string& a : json_flags(entry["flags"])) args.push_back(a);
    const std::string missing = "/nonexistent/" + name + ".pt";
    for (const std::string a : {"--model_path", missing.c_str(), "--device", "cpu"}) {
      args.push_back(a);
    }
    const RunResult r = run_idiff(args);
    EXPECT_EQ(r.exit_code, 1) << name << ": " << r.err;
    EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  }
}

// `idiff edit --task inpaint`: every output keeps the image where the mask is white.
TEST(KarrasCli, EditInpaintsKeepingTheMaskedImage) {
  const CmFiles f;
  at::manual_seed(5);
  const at::Tensor image = at::randint(0, 256, {32, 32, 3}, at::kByte);
  at::Tensor mask = at::full({32, 32, 3}, 255, at::kByte);
  mask.narrow(0, 8, 16).narrow(1, 8, 16).fill_(0);  // fill the centre
  const std::string image_png = f.dir.file("image.png"), mask_png = f.dir.file("mask.png");
  write_png(image_png, image);
  write_png(mask_png, mask);
  std::vector<std::string> args = {"edit", f.model};
  for (const std::string& a : fixture_flags("cm_tiny")) args.push_back(a);
  const std::string out = f.dir.file("edit");
  for (const std::string a : {"--training_mode", "consistency_distillation", "--task", "inpaint",
                              "--image", image_png.c_str(), "--mask", mask_png.c_str(),
                              "--num_samples", "2", "--class", "1", "--log_dir", out.c_str()}) {
    args.push_back(a);
  }
  const RunResult r = run_idiff(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("multistep, 2 steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--ts 0,22,39"), std::string::npos) << r.out;
  const at::Tensor samples = read_npz(out + "/samples_2x32x32x3.npz").at("arr_0");
  const at::Tensor keep = (mask == 255);
  for (int64_t i = 0; i < 2; ++i) {
    const at::Tensor diff = (samples[i].to(at::kInt) - image.to(at::kInt)).abs();
    EXPECT_LE(diff.masked_select(keep).max().item<int>(), 1);                     // the kept pixels
    EXPECT_GT(diff.masked_select(~keep).to(at::kFloat).mean().item<float>(), 5);  // filled
  }
  EXPECT_TRUE(std::ifstream(out + "/edit_input.png").good());
  // Without the mask, and with RePaint's jumps (for the other families): one-line errors.
  args.resize(args.size() - 14);
  for (const std::string a : {"--training_mode", "consistency_distillation", "--task", "inpaint",
                              "--image", image_png.c_str(), "--log_dir", out.c_str()}) {
    args.push_back(a);
  }
  const RunResult no_mask = run_idiff(args);
  EXPECT_EQ(no_mask.exit_code, 2);
  EXPECT_NE(no_mask.err.find("--task inpaint needs --mask"), std::string::npos) << no_mask.err;
  for (const std::string a : {"--mask", mask_png.c_str(), "--resample_jumps", "2"})
    args.push_back(a);
  const RunResult jumps = run_idiff(args);
  EXPECT_EQ(jumps.exit_code, 2);
  EXPECT_NE(jumps.err.find("--resample_jumps is RePaint's"), std::string::npos) << jumps.err;
}

TEST(KarrasCli, BadFlagsAndFilesOfTheOtherFamilyAreOneLineErrors) {
  const CmFiles f;
  const auto err = [&](const std::vector<std::string>& extra) {
    const RunResult r = run_idiff(cm_sample_args(f, f.dir.file("bad"), extra));
    EXPECT_NE(r.exit_code, 0);
    return r.err;
  };
  const std::string cd = "consistency_distillation";
  EXPECT_NE(err({"--training_mode", cd, "--sampler", "multistep", "--ts", "0,39,22"})
                .find("--ts must increase"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", cd, "--sampler", "multistep", "--ts", "0,22,45"})
                .find("--ts must increase within [0, 39]"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", cd, "--sampler", "heun", "--ts", "0,22,39"})
                .find("--ts is read by multistep"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", "edm", "--sigma_min", "90"})
                .find("--sigma_max must be greater than --sigma_min"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", "edm", "--use_ddim", "True"}).find("--use_ddim"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", "edm", "--sampler", "ddpm"}).find("needs another sampler"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", "edm", "--sampler", "euler", "--s_churn", "1"})
                .find("does not read --s_churn 1"),
            std::string::npos);
  EXPECT_NE(err({"--training_mode", "edm9"}).find("--training_mode must be improved_diffusion"),
            std::string::npos);
  // A CM file read as an improved-diffusion model, and the reverse.
  const std::string cm_as_improved = err({"--steps", "2"});
  EXPECT_NE(cm_as_improved.find("a consistency_models checkpoint"), std::string::npos)
      << cm_as_improved;
  const TempDir d;
  const RunResult r = run_idiff({"sample", data_path("unet_tiny.weights.safetensors"),
                                 "--training_mode", "edm", "--log_dir", d.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("an improved-/guided-diffusion checkpoint"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace idiff::test
