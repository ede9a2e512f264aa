// The idiff program given hostile settings (issue 16): integer flags beyond their range or
// int64, non-finite numbers, empty list items, impossible step numbers, a data folder whose
// images are all bad or special files, a shared or full log folder, stale temporaries,
// and non-finite weights, noise or labels. Each ends in one clear line on stderr and a
// non-zero exit (never an abort or a hang: the runs that could hang have a deadline).
#include "test_train_util.h"

#include "idiff/common/error.h"
#include "idiff/common/logger.h"
#include "idiff/common/strings.h"
#include "idiff/data/image_grid.h"
#include "idiff/io/npz.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_convert.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

namespace idiff::test {
namespace {

#define EXPECT_HAS(text, needle) \
  EXPECT_NE((text).find(needle), std::string::npos) << "missing '" << (needle) << "' in: " << (text)

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The idiff program with a deadline: killed (exit 137) if it runs past `seconds`.
RunResult run_idiff_within(int seconds, const std::vector<std::string>& args) {
  std::string cmd = "timeout -s KILL " + std::to_string(seconds) + " " + quoted(IDIFF_EXE);
  for (const auto& a : args) cmd += " " + quoted(a);
  return run_shell(cmd);
}

// A clear error: exit 1, or 2 for a flag error (not an abort, 134, nor a kill, 137), one
// line naming `needle`.
void expect_clear_error(const RunResult& r, const std::string& needle, int code = 1) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_HAS(r.err, needle);
  EXPECT_HAS(r.err, "idiff: error: ");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

std::vector<std::string> train_args(const std::string& data, const std::string& log_dir,
                                    const std::vector<std::string>& extra = {}) {
  return cat_args({"train", "--data_dir", data, "--log_dir", log_dir, "--batch_size", "2",
                   "--device", "cpu", "--num_workers", "1", "--max_steps", "1"},
                  tiny_flags(), extra);
}

TEST(HostileFlags, IntegerAndNumberFlagsAreCheckedWhereParsed) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"train", "--batch_size", "99999999999999999999"},
       "--batch_size: 99999999999999999999 is out of range (expected an integer from 1 to 65536)"},
      {{"train", "--batch_size", "4294967297"}, "--batch_size: 4294967297 is out of range"},
      {{"nll", "--batch_size", "4294967297"}, "--batch_size: 4294967297 is out of range"},
      {{"train", "--batch_size", "12abc"}, "--batch_size: '12abc' is not an integer"},
      {{"train", "--num_channels", "-64"}, "--num_channels: -64 is out of range"},
      {{"sample", "--diffusion_steps", "0"}, "--diffusion_steps: 0 is out of range"},
      {{"sample", "--num_samples", "0"}, "--num_samples: 0 is out of range"},
      {{"train", "--max_steps", "9223372036854775807"},
       "--max_steps: 9223372036854775807 is out of range"},
      {{"train", "--seed", "-1"}, "--seed: '-1' is not an integer"},
      {{"sample", "--seed", "18446744073709551616"},
       "--seed: 18446744073709551616 is out of range"},
      {{"train", "--lr", "inf"}, "--lr: 'inf' is not a finite number"},
      {{"train", "--lr", "nan"}, "--lr: 'nan' is not a finite number"},
      {{"train", "--lr", "-1e-4"}, "--lr: -1e-4 is out of range (expected a number >= 0)"},
      {{"train", "--lr", "1e999"}, "--lr: '1e999' is not a finite number"},
      {{"train", "--max_image_pixels", "0"}, "--max_image_pixels: 0 is out of range"},
      {{"info", "--large_size", "-1"}, "--large_size: -1 is out of range"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args[0] + " " + c.args[1] + " " + c.args[2]);
    const RunResult r = run_idiff(c.args);
    expect_clear_error(r, c.needle, 2);
    EXPECT_HAS(r.err, "(idiff " + c.args[0] + " --help lists the flags)");
  }
  // The ranges are in --help.
  EXPECT_HAS(run_idiff({"train", "--help"}).out, "INT in [1, 65536]");
}

// One rule for exit codes: a flag value the library refuses (out of its set, conflicting
// with another flag) exits 2 like one the parser refuses, with one line naming the flag.
TEST(HostileFlags, ValuesTheLibraryRefusesExitTwo) {
  TempDir dir, data;
  write_shape_folder(data.path(), 2);
  const std::vector<std::string> sample = {
      "sample", "--model_path", dir.file("m.pt"), "--log_dir", dir.path(), "--device", "cpu"};
  const std::vector<std::string> train = {"train",     "--data_dir",  data.path(),
                                          "--log_dir", dir.path(),    "--device",
                                          "cpu",       "--max_steps", "1"};
  struct Case {
    std::vector<std::string> base, args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {sample, {"--sampler", "bogus", "--steps", "4"}, "--sampler: unknown sampler 'bogus'"},
      {sample, {"--schedule", "bogus", "--steps", "4"}, "--schedule: unknown schedule 'bogus'"},
      {sample, {"--noise_schedule", "cosin"}, "cosin"},
      {sample, {"--class", "-1", "--class_cond", "True"}, "--class: -1 is not a class"},
      {sample, {"--class", "3"}, "--class 3 needs a class-conditional model"},
      {sample, {"--device", "tpu"}, "tpu"},
      {sample, {"--timestep_respacing", "0"}, "0"},
      {sample, {"--steps", "4", "--final_sigma", "one"}, "--final_sigma"},
      {sample, {"--sampler", "ddim", "--steps", "4", "--eta", "-1"}, "--eta"},
      {sample, {"--sampler", "unipc", "--steps", "4", "--order", "5"}, "--order"},
      {sample, {"--sampler", "heun", "--steps", "4", "--order", "3"}, "does not read --order"},
      {sample, {"--use_ddim", "True", "--sampler", "unipc"}, "give one"},
      {sample, {"--schedule", "karras"}, "need --steps"},
      {sample, {"--guidance_scale", "2"}, "--guidance_scale"},
      {sample, {"--classifier_scale", "2"}, "--classifier_scale needs a classifier"},
      {sample, {"--init_image", "x.png", "--steps", "4"}, "--init_image needs --t_start"},
      {train, {"--precision", "fp64"}, "--precision"},
      {train, {"--ema_rate", "1.5"}, "--ema_rate"},
      {train, {"--microbatch", "3", "--batch_size", "4"}, "--microbatch"},
      {train, {"--training_mode", "edm9"}, "--training_mode must be improved_diffusion, edm,"},
      {train, {"--schedule_sampler", "bogus"}, "bogus"},
      {{"eval", "--ref", dir.file("r.npz")}, {}, "--samples is required"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.base;
    args.insert(args.end(), c.args.begin(), c.args.end());
    SCOPED_TRACE(args[0] + (c.args.empty() ? "" : " " + c.args[0] + " " + c.args[1]));
    expect_clear_error(run_idiff_within(120, args), c.needle, 2);
  }
}

TEST(HostileFlags, ListsRefuseEmptyItems) {
  EXPECT_EQ(parse_int_list("16,8", "--x"), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(parse_int_list("", "--x"), (std::vector<int64_t>{}));
  EXPECT_EQ(parse_int_list(" 3 ", "--x"), (std::vector<int64_t>{3}));
  for (const char* bad : {",", "3,,7", "3,", ",7"}) {
    EXPECT_HAS(error_of([&] { parse_int_list(bad, "--class"); }), "has an empty item") << bad;
  }
  EXPECT_HAS(error_of([&] { parse_int_list("99999999999999999999", "--class"); }), "out of range");
  EXPECT_HAS(error_of([&] { parse_double_list("0.9,inf", "--ema_rate"); }), "not a finite number");
  TempDir dir;
  for (const char* bad : {",", "3,,7"}) {
    expect_clear_error(run_idiff({"sample", "--class", bad, "--model_path", dir.file("m.pt"),
                                  "--log_dir", dir.path(), "--device", "cpu"}),
                       "--class: '" + std::string(bad) + "' has an empty item", 2);
  }
}

TEST(HostileRuns, ResumeStepBeyondTheLimitIsRefused) {
  TempDir data, dir;
  write_shape_folder(data.path(), 2);
  for (const char* name : {"model9223372036854775806.pt", "model99999999999999999999.pt"}) {
    const RunResult r = run_idiff_within(
        120, train_args(data.path(), dir.path(), {"--resume_checkpoint", dir.file(name)}));
    expect_clear_error(r, std::string(name) + ": the step number in its name: ", 2);
    EXPECT_HAS(r.err, "is out of range (expected an integer from 0 to 1000000000000)");
  }
}

// Every image bad, read by worker threads: the error, not a spinning loader.
TEST(HostileRuns, AllImagesBadWithWorkersEndsInTheError) {
  TempDir data, dir;
  for (int i = 0; i < 3; ++i)
    write_bytes(data.file("bad_" + std::to_string(i) + ".png"), "not a png");
  const RunResult r = run_idiff_within(
      120,
      train_args(data.path(), dir.path(), {"--skip_bad_images", "True", "--num_workers", "2"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_HAS(r.err, "every one of the 3 images of this process's share of the data is unreadable");
}

// A FIFO and a link to /dev/zero among the images: skipped as bad images, never read.
TEST(HostileRuns, SpecialFilesInTheDataFolderAreSkipped) {
  TempDir data, dir;
  write_shape_folder(data.path(), 2);
  ASSERT_EQ(::mkfifo(data.file("disc_fifo.png").c_str(), 0644), 0);
  ASSERT_EQ(::symlink("/dev/zero", data.file("disc_zero.png").c_str()), 0);
  const RunResult r = run_idiff_within(
      120,
      train_args(data.path(), dir.path(), {"--skip_bad_images", "True", "--num_workers", "2"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_HAS(r.err, "disc_fifo.png is not a regular file (it is a FIFO)");
  EXPECT_HAS(r.err, "disc_zero.png is not a regular file (it is a character device)");
}

// One run per log folder; the folder is free again once the holder is gone. Temporaries
// of checkpoint names left by a killed run are removed at start, other files kept.
TEST(HostileRuns, LogFolderLockAndStaleTemporaries) {
  TempDir data, dir;
  write_shape_folder(data.path(), 2);
  {
    Logger holder(dir.path(), true);
    const RunResult r = run_idiff_within(120, train_args(data.path(), dir.path()));
    expect_clear_error(r, "log folder " + dir.path() + " is in use by another run (process " +
                              std::to_string(::getpid()) + " on ");
  }
  for (const char* name : {".model000002.pt.tmp.99.0.1", ".ema_0.9999_000002.pt.tmp.99.1.2",
                           ".opt000002.pt.tmp.3.4.5", ".notes.txt.tmp.1"}) {
    write_bytes(dir.file(name), "partial");
  }
  const RunResult r = run_idiff_within(120, train_args(data.path(), dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_HAS(r.out, "removed 3 temporary files left by an interrupted run");
  EXPECT_FALSE(std::filesystem::exists(dir.file(".model000002.pt.tmp.99.0.1")));
  EXPECT_FALSE(std::filesystem::exists(dir.file(".opt000002.pt.tmp.3.4.5")));
  EXPECT_TRUE(std::filesystem::exists(dir.file(".notes.txt.tmp.1")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("model000001.pt")));
}

// A full disk (/dev/full behind the log files): the first failed write stops the run.
TEST(HostileRuns, LogWriteErrorsStopTheRun) {
  TempDir data, a, b;
  write_shape_folder(data.path(), 2);
  ASSERT_EQ(::symlink("/dev/full", a.file("log.txt").c_str()), 0);
  expect_clear_error(run_idiff_within(120, train_args(data.path(), a.path())),
                     "log.txt: cannot write the log (No space left on device); stopping");
  ASSERT_EQ(::symlink("/dev/full", b.file("progress.csv").c_str()), 0);
  const RunResult r = run_idiff_within(120, train_args(data.path(), b.path()));
  expect_clear_error(r, "progress.csv: cannot write the log (No space left on device); stopping");
  EXPECT_FALSE(std::filesystem::exists(b.file("model000001.pt")));
}

// A PNG that cannot be written whole (here: a file-size limit, as a full disk) is an error
// naming it, and leaves nothing under its name (it was a 0-byte file before).
TEST(HostileRuns, PngWriteErrorsLeaveNoFile) {
  TempDir dir;
  const at::Tensor image = at::randint(0, 256, {64, 64, 3}, at::kByte);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  rlimit small = old;
  small.rlim_cur = 512;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string err = test::error_of([&] { idiff::write_png(dir.file("x.png"), image); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(err.find("x.png"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.png")));
  idiff::write_png(dir.file("x.png"), image);  // and it writes once the limit is gone
  EXPECT_GT(std::filesystem::file_size(dir.file("x.png")), 512u);
}

// Weights holding NaN or a boolean tensor, NaN in x_T: refused where they enter, with the
// file named; weights so large that the samples overflow: refused before writing them.
TEST(HostileRuns, NonFiniteWeightsNoiseAndSamplesAreRefused) {
  TempDir dir, out;
  ModelConfig m = tiny_model();
  UNetModel model = create_model(m);
  const TensorMap good = state_dict(*model);
  const auto with_changed = [&](const std::string& name, const auto& change) {
    TensorMap sd;
    for (const auto& [k, t] : good) sd.insert(k, k == "out.2.weight" ? change(t) : t.clone());
    save_tensor_file(dir.file(name), sd);
  };
  with_changed("nan.pt", [](const at::Tensor& t) { return at::full_like(t, NAN); });
  with_changed("bool.pt", [](const at::Tensor& t) { return at::ones_like(t, at::kBool); });
  with_changed("good.pt", [](const at::Tensor& t) { return t.clone(); });
  // 1e38 in every output weight: finite, but their sums overflow float32.
  with_changed("huge.pt", [](const at::Tensor& t) { return at::full_like(t, 1e38); });
  TensorMap noise;
  noise.insert("x_T", at::full({1, 3, 32, 32}, NAN));
  save_tensor_file(dir.file("noise.pt"), noise);

  const auto sample = [&](const std::string& weights, std::vector<std::string> extra = {}) {
    return run_idiff_within(
        120, cat_args({"sample", "--model_path", dir.file(weights), "--log_dir", out.path(),
                       "--num_samples", "1", "--batch_size", "1", "--timestep_respacing", "4",
                       "--device", "cpu", "--grid_size", "0"},
                      tiny_flags(), extra));
  };
  RunResult r = sample("nan.pt");
  expect_clear_error(r, "nan.pt: weights holding NaN or infinity (1): out.2.weight");
  r = sample("bool.pt");
  expect_clear_error(r, "bool.pt: weights that are not floating point (1): out.2.weight (Bool)");
  r = sample("good.pt", {"--initial_noise", dir.file("noise.pt")});
  expect_clear_error(
      r, "noise.pt: x_T must hold finite floating-point values (found NaN or infinity)");
  // A bare torch.save(tensor) is a tensor file too (its help says so): its x_T is read.
  write_pt(dir.file("bare.pt"), tensor_value(at::full({1, 3, 32, 32}, NAN)));
  r = sample("good.pt", {"--initial_noise", dir.file("bare.pt")});
  expect_clear_error(r,
                     "bare.pt: x_T must hold finite floating-point values (found NaN or infinity)");
  write_pt(dir.file("bare.pt"), tensor_value(at::randn({1, 3, 32, 32})));
  r = sample("good.pt", {"--initial_noise", dir.file("bare.pt")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::filesystem::remove(out.file("samples_1x32x32x3.npz"));
  r = sample("huge.pt");
  expect_clear_error(r,
                     "the samples of batch 1 hold NaN or infinity (model " + dir.file("huge.pt"));
  EXPECT_FALSE(std::filesystem::exists(out.file("samples_1x32x32x3.npz")));
}

// Labels of a samples file that are not integers are refused, not truncated.
TEST(HostileRuns, FloatLabelsInBaseSamplesAreRefused) {
  TempDir dir;
  TensorMap npz;
  npz.insert("arr_0", at::zeros({1, 8, 8, 3}, at::kByte));
  npz.insert("arr_1", at::full({1}, 2.7, at::kFloat));
  write_npz(dir.file("base.npz"), npz);
  expect_clear_error(
      run_idiff({"super-res-sample", "--base_samples", dir.file("base.npz"), "--class_cond", "True",
                 "--model_path", dir.file("m.pt"), "--large_size", "32", "--small_size", "8",
                 "--log_dir", dir.path(), "--device", "cpu"}),
      "base.npz: arr_1 (labels) must hold integers, got Float");
}

}  // namespace
}  // namespace idiff::test
