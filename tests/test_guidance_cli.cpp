// Guidance from the command line: `idiff train --class_dropout_prob` then `idiff sample
// --guidance_scale`, `idiff sample --classifier_path` with a guided-diffusion classifier,
// and the flags' errors.
#include "test_adm_util.h"
#include "test_train_util.h"

#include "idiff/io/npz.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>

#include <filesystem>

namespace idiff {
namespace {

using test::TempDir;

// One line on stderr, naming `what`, and a non-zero exit (no crash).
void expect_error(const test::RunResult& r, const std::string& what) {
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.exit_code, 134) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
}

TEST(GuidanceCli, TrainWithANullLabelThenSampleWithClassifierFreeGuidance) {
  TempDir data, run, out;
  test::write_shape_folder(data.path(), 4);
  const auto model = test::cat_args(
      test::tiny_flags(),
      std::vector<std::string>{"--class_cond", "True", "--class_dropout_prob", "0.2"});
  auto r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"train", "--data_dir", data.path(), "--batch_size",
                                              "2", "--max_steps", "2", "--save_interval", "2",
                                              "--log_dir", run.path(), "--device", "cpu"},
                     model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TensorMap sd = load_tensor_file(run.file("model000002.pt"));
  EXPECT_EQ(sd.at("label_emb.weight").size(0), kNumClasses + 1);  // the null label's row
  r = test::run_idiff(test::cat_args(std::vector<std::string>{"sample",
                                                              "--model_path",
                                                              run.file("model000002.pt"),
                                                              "--num_samples",
                                                              "2",
                                                              "--batch_size",
                                                              "2",
                                                              "--class",
                                                              "1",
                                                              "--guidance_scale",
                                                              "3",
                                                              "--sampler",
                                                              "dpmpp_2m",
                                                              "--steps",
                                                              "3",
                                                              "--log_dir",
                                                              out.path(),
                                                              "--device",
                                                              "cpu",
                                                              "--grid_size",
                                                              "0"},
                                     model));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("classifier-free guidance: scale 3"), std::string::npos) << r.out;
  const auto npz = read_npz(out.file("samples_2x32x32x3.npz"));
  EXPECT_TRUE(at::equal(npz.at("arr_1"), at::tensor({1, 1}, at::kLong)));

  // flags.json names the data's classes: --class takes a name, random labels stay among
  // the two classes trained (not the embedding's 1000 rows), other names and indices fail.
  const auto sample_with = [&](const std::vector<std::string>& extra) {
    return test::run_idiff(test::cat_args(
        std::vector<std::string>{"sample", run.file("model000002.pt"), "--num_samples", "4",
                                 "--steps", "2", "--log_dir", out.path(), "--grid_size", "0"},
        extra));
  };
  r = sample_with({"--class", "ring,disc"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(at::equal(read_npz(out.file("samples_4x32x32x3.npz")).at("arr_1"),
                        at::tensor({1, 0, 1, 0}, at::kLong)));
  r = sample_with({"--num_samples", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(read_npz(out.file("samples_16x32x32x3.npz")).at("arr_1").max().item<int64_t>(), 2);
  r = sample_with({"--class", "square"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--class: 'square' is not a class of the model (disc, ring)"),
            std::string::npos)
      << r.err;
  r = sample_with({"--class", "2"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--class: 2 is not a class of " + run.file("model000002.pt") + " (0..1)"),
            std::string::npos)
      << r.err;

  // The same file without the null label's flag (given: it wins over the run's
  // flags.json), and guidance on a model without one.
  r = test::run_idiff(test::cat_args(
      std::vector<std::string>{"sample"}, test::fixture_flags("unet_tiny"),
      std::vector<std::string>{"--model_path", run.file("model000002.pt"), "--num_samples", "1",
                               "--log_dir", out.path(), "--device", "cpu"},
      test::tiny_flags(),
      std::vector<std::string>{"--class_cond", "True", "--class_dropout_prob", "0"}));
  expect_error(r, "label_emb.weight");
  r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"sample", "--model_path", run.file("model000002.pt"),
                                              "--num_samples", "1", "--guidance_scale", "2",
                                              "--log_dir", out.path(), "--device", "cpu",
                                              "--class_cond", "False", "--class_dropout_prob", "0"},
                     test::tiny_flags()));
  expect_error(r, "--guidance_scale");
  r = test::run_idiff(
      test::cat_args(std::vector<std::string>{"train", "--data_dir", data.path(), "--max_steps",
                                              "1", "--class_dropout_prob", "0.1", "--log_dir",
                                              run.path(), "--device", "cpu"},
                     test::tiny_flags()));
  expect_error(r, "--class_dropout_prob");
}

// guided-diffusion's README flags for each released file paste unchanged: the command
// gets as far as opening the (here absent) checkpoint.
TEST(GuidanceCli, TheReleasedFilesFlagsPasteUnchanged) {
  const auto published = test::load_json("adm_published.json");
  for (const auto& [name, entry] : published.items()) {
    if (entry["kind"] == "classifier") continue;
    std::vector<std::string> args = {entry["kind"] == "super_res" ? "super-res-sample" : "sample"};
    for (const std::string& a : test::json_flags(entry["flags"])) args.push_back(a);
    const std::string missing = "/nonexistent/" + name + ".pt";
    args = test::cat_args(
        args, std::vector<std::string>{"--model_path", missing, "--defaults", "guided-diffusion",
                                       "--device", "cpu", "--timestep_respacing", "250"});
    if (entry["kind"] == "super_res") {
      args = test::cat_args(args, std::vector<std::string>{"--base_samples", missing});
    } else {
      args = test::cat_args(args, std::vector<std::string>{"--classifier_path", missing,
                                                           "--classifier_scale", "1.0"});
    }
    const auto r = test::run_idiff(args);
    EXPECT_EQ(r.exit_code, 1) << name << ": " << r.err;
    EXPECT_NE(r.err.find("/nonexistent/" + name + ".pt"), std::string::npos) << r.err;
  }
}

TEST(GuidanceCli, SampleWithAGuidedDiffusionClassifier) {
  TempDir dir, out;
  // guided-diffusion's small models (formula weights) as files.
  save_tensor_file(dir.file("model.pt"), state_dict(*test::adm_tiny_model()));
  save_tensor_file(dir.file("classifier.pt"), state_dict(*test::adm_tiny_classifier()));

  const std::vector<std::string> model_flags = {"--image_size",
                                                "64",
                                                "--num_channels",
                                                "32",
                                                "--num_res_blocks",
                                                "1",
                                                "--num_head_channels",
                                                "16",
                                                "--attention_resolutions",
                                                "16,8",
                                                "--channel_mult",
                                                "1,2,2",
                                                "--class_cond",
                                                "True",
                                                "--resblock_updown",
                                                "True",
                                                "--use_new_attention_order",
                                                "True",
                                                "--learn_sigma",
                                                "True",
                                                "--noise_schedule",
                                                "cosine",
                                                "--defaults",
                                                "guided-diffusion",
                                                "--timestep_respacing",
                                                "2"};
  const std::vector<std::string> cls = {"--classifier_width",
                                        "64",
                                        "--classifier_depth",
                                        "1",
                                        "--classifier_attention_resolutions",
                                        "16,8"};
  const std::vector<std::string> run = {
      "sample", "--model_path", dir.file("model.pt"), "--num_samples", "2",   "--batch_size",
      "2",      "--log_dir",    out.path(),           "--device",      "cpu", "--grid_size",
      "0"};
  auto r = test::run_idiff(
      test::cat_args(run, model_flags, cls,
                     std::vector<std::string>{"--classifier_path", dir.file("classifier.pt"),
                                              "--classifier_scale", "2", "--class", "7"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("classifier guidance: " + dir.file("classifier.pt") + ", scale 2"),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(at::equal(read_npz(out.file("samples_2x64x64x3.npz")).at("arr_1"),
                        at::tensor({7, 7}, at::kLong)));
  EXPECT_NE(r.out.find("rescale_timesteps False, rescale_learned_sigmas False "
                       "(guided-diffusion's defaults)"),
            std::string::npos)
      << r.out;

  // idiff info gives the flags of both files.
  r = test::run_idiff({"info", dir.file("classifier.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("flags: --image_size 64 --classifier_width 64 --classifier_depth 1 "
                       "--classifier_attention_resolutions 16,8 "
                       "--classifier_use_scale_shift_norm True --classifier_resblock_updown True "
                       "--classifier_pool attention"),
            std::string::npos)
      << r.out;
  r = test::run_idiff({"info", dir.file("model.pt")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--resblock_updown True --defaults guided-diffusion"), std::string::npos)
      << r.out;

  // A classifier of other flags, a missing one, a scale without one.
  r = test::run_idiff(test::cat_args(
      run, model_flags, std::vector<std::string>{"--classifier_path", dir.file("classifier.pt")}));
  expect_error(r, dir.file("classifier.pt"));
  EXPECT_NE(r.err.find("`classifier_*`"), std::string::npos) << r.err;
  r = test::run_idiff(test::cat_args(
      run, model_flags, cls, std::vector<std::string>{"--classifier_path", dir.file("none.pt")}));
  expect_error(r, dir.file("none.pt"));
  r = test::run_idiff(
      test::cat_args(run, model_flags, std::vector<std::string>{"--classifier_scale", "3"}));
  expect_error(r, "--classifier_scale");
  r = test::run_idiff(
      test::cat_args(run, model_flags, std::vector<std::string>{"--defaults", "adm"}));
  expect_error(r, "--defaults");
  // Explicit flags win over --defaults, and the log says so.
  r = test::run_idiff(
      test::cat_args(run, model_flags, std::vector<std::string>{"--rescale_timesteps", "True"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("rescale_timesteps True, rescale_learned_sigmas False (set by flags)"),
            std::string::npos)
      << r.out;
}

// A small classifier for 32x32 images (heads of 64 channels at 8x8).
const std::vector<std::string> kSmallClassifier = {"--classifier_width",
                                                   "32",
                                                   "--classifier_depth",
                                                   "1",
                                                   "--classifier_attention_resolutions",
                                                   "8"};

std::vector<std::string> classifier_train_args(const std::string& data, const std::string& log,
                                               const std::vector<std::string>& extra) {
  const std::vector<std::string> run = {"classifier-train",
                                        "--data_dir",
                                        data,
                                        "--val_data_dir",
                                        data,
                                        "--image_size",
                                        "32",
                                        "--batch_size",
                                        "4",
                                        "--iterations",
                                        "4",
                                        "--save_interval",
                                        "2",
                                        "--log_interval",
                                        "1",
                                        "--eval_interval",
                                        "2",
                                        "--log_dir",
                                        log,
                                        "--device",
                                        "cpu",
                                        "--seed",
                                        "3"};
  return test::cat_args(run, kSmallClassifier, extra);
}

TEST(ClassifierTrainCli, TrainsLogsValidatesResumesExactlyAndGuidesSampling) {
  TempDir data, straight, resumed, out;
  test::write_shape_folder(data.path(), 8);
  auto r = test::run_idiff(classifier_train_args(data.path(), straight.path(), {}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* key : {"train_loss", "train_acc@1", "train_acc@5", "val_loss", "val_acc@1"}) {
    EXPECT_NE(r.out.find(key), std::string::npos) << key << "\n" << r.out;
  }
  for (const char* file : {"model000002.pt", "opt000002.pt", "model000004.pt", "opt000004.pt"}) {
    EXPECT_TRUE(std::filesystem::exists(straight.file(file))) << file;
  }
  // Resuming from step 2 ends where the straight run did.
  r = test::run_idiff(classifier_train_args(
      data.path(), resumed.path(), {"--resume_checkpoint", straight.file("model000002.pt")}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TensorMap a = load_tensor_file(straight.file("model000004.pt"));
  const TensorMap b = load_tensor_file(resumed.file("model000004.pt"));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, t] : a) EXPECT_TRUE(at::equal(t, b.at(key))) << key;
  // As many outputs as the data has classes (disc, ring), not guided-diffusion's 1000.
  EXPECT_EQ(infer_classifier_config(a).num_classes, 2);
  EXPECT_NE(r.out.find("classes: 2 (the resumed classifier's)"), std::string::npos) << r.out;

  // The trained classifier guides `idiff sample`, and idiff info reads its flags.
  const std::vector<std::string> sample = {"--model_path",
                                           test::data_path("unet_tiny.weights.safetensors"),
                                           "--num_samples",
                                           "2",
                                           "--batch_size",
                                           "2",
                                           "--timestep_respacing",
                                           "3",
                                           "--classifier_path",
                                           straight.file("model000004.pt"),
                                           "--log_dir",
                                           out.path(),
                                           "--device",
                                           "cpu",
                                           "--grid_size",
                                           "0"};
  r = test::run_idiff(test::cat_args(std::vector<std::string>{"sample"},
                                     test::fixture_flags("unet_tiny"), sample, kSmallClassifier));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const TensorMap samples = read_npz(out.file("samples_2x32x32x3.npz"));
  ASSERT_TRUE(samples.contains("arr_1"));
  // Random labels among the classifier's two classes; a class it does not have is refused.
  EXPECT_LT(samples.at("arr_1").max().item<int64_t>(), 2);
  r = test::run_idiff(test::cat_args(std::vector<std::string>{"sample", "--class", "2"},
                                     test::fixture_flags("unet_tiny"), sample, kSmallClassifier));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(
      r.err.find("--class: 2 is not a class of " + straight.file("model000004.pt") + " (0..1)"),
      std::string::npos)
      << r.err;
  r = test::run_idiff({"info", straight.file("model000004.pt")});
  EXPECT_NE(r.out.find("--image_size 32 --classifier_width 32 --classifier_depth 1 "
                       "--classifier_attention_resolutions 8"),
            std::string::npos)
      << r.out;

  // Bad inputs: a missing folder, a bad pool.
  expect_error(test::run_idiff(classifier_train_args(data.file("none"), out.path(), {})),
               data.file("none"));
  expect_error(
      test::run_idiff(classifier_train_args(data.path(), out.path(), {"--classifier_pool", "max"})),
      "--classifier_pool");
}

}  // namespace
}  // namespace idiff
