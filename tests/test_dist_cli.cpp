// The idiff program as the ranks of a multi-process run (issue 7), started by the
// environment variables torchrun sets (and once through mpirun) on this machine, Gloo over
// loopback: training writes on rank 0 only and resumes like the straight run; WORLD_SIZE=1
// under a launcher is the plain run bit for bit; a rank that dies or is signalled stops
// the others cleanly; sampling writes exactly --num_samples images, the one-process ones;
// nll shards the data; --dist_timeout is a flag of every command.
#include "test_dist_util.h"
#include "test_train_util.h"

#include "idiff/common/strings.h"
#include "idiff/io/npz.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <thread>

namespace idiff::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The idiff program as ranks, rank r with the arguments args_of[r].
LaunchedRanks start_idiff(const std::vector<std::vector<std::string>>& args_of,
                          const TempDir& dir) {
  std::vector<std::vector<std::string>> argvs;
  for (const auto& args : args_of) {
    argvs.push_back({IDIFF_EXE});
    argvs.back().insert(argvs.back().end(), args.begin(), args.end());
  }
  return start_ranks(argvs, dir.path());
}

bool exists(const std::string& path) {
  return std::ifstream(path).good();
}

// Waits (up to a minute) until `path` exists.
bool wait_for_file(const std::string& path) {
  for (int i = 0; i < 600; ++i) {
    if (exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void expect_same_checkpoint(const std::string& a, const std::string& b, double tol) {
  const TensorMap ta = load_tensor_file(a), tb = load_tensor_file(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [key, t] : ta)
    EXPECT_CLOSE(tb.at(key), t, tol) << a << " vs " << b << ": " << key;
}

// The last value of `column` in a progress.csv.
std::string last_csv_value(const std::string& csv, const std::string& column) {
  std::ifstream in(csv);
  std::string header, line, last;
  std::getline(in, header);
  while (std::getline(in, line)) last = line;
  const auto cols = split(header, ','), vals = split(last, ',');
  for (size_t i = 0; i < cols.size() && i < vals.size(); ++i) {
    if (cols[i] == column) return vals[i];
  }
  return "<no " + column + ">";
}

std::vector<std::string> train_args(const std::string& data, const std::string& log_dir,
                                    std::vector<std::string> extra = {}) {
  return with(with({"train", "--data_dir", data, "--log_dir", log_dir, "--batch_size", "2",
                    "--device", "cpu", "--num_workers", "1", "--log_interval", "1", "--seed", "5"},
                   tiny_flags()),
              extra);
}

// 2 ranks of `idiff train` launched by environment variables, then the same run through
// mpirun: the same checkpoints; only rank 0 writes anything.
TEST(DistTrainCli, TwoRanksTrainAndOnlyRankZeroWrites) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 8);
  const std::vector<std::string> common = {"--max_steps", "3", "--save_interval", "2"};
  LaunchedRanks run = start_idiff({train_args(data.path(), logs.file("r0"), common),
                                   train_args(data.path(), logs.file("r1"), common)},
                                  dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  for (const char* name :
       {"model000002.pt", "ema_0.9999_000002.pt", "opt000002.pt", "model000003.pt",
        "ema_0.9999_000003.pt", "opt000003.pt", "log.txt", "progress.csv"}) {
    EXPECT_TRUE(exists(logs.file("r0/") + name)) << name;
  }
  EXPECT_FALSE(exists(logs.file("r1"))) << "rank 1 created its log directory";
  EXPECT_EQ(run.ranks[1]->out(), "");
  EXPECT_CONTAINS(run.ranks[0]->out(), "distributed: rank 0 of 2 (local rank 0, torchrun");
  EXPECT_CONTAINS(run.ranks[0]->out(), "global batch 4 (--batch_size 2 per rank)");
  EXPECT_EQ(last_csv_value(logs.file("r0/progress.csv"), "samples"),
            "12");  // 3 steps x 2 ranks x 2

  const std::string mpirun =
      "timeout 300 mpirun --allow-run-as-root --oversubscribe -n 2 -x OMP_NUM_THREADS=1 "
      "-x TORCH_CPP_LOG_LEVEL=ERROR -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=" +
      std::to_string(free_port()) + " " + IDIFF_EXE;
  std::string cmd = mpirun;
  for (const auto& a : train_args(data.path(), logs.file("mpi"), common)) cmd += " '" + a + "'";
  const RunResult r = run_shell(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "distributed: rank 0 of 2 (local rank 0, mpirun");
  expect_same_checkpoint(logs.file("r0/model000003.pt"), logs.file("mpi/model000003.pt"), 1e-6);
  expect_same_checkpoint(logs.file("r0/ema_0.9999_000003.pt"),
                         logs.file("mpi/ema_0.9999_000003.pt"), 1e-6);
}

// Resuming 2 ranks repeats the straight 2-rank run. Only rank 0 reads the checkpoint:
// rank 1 is given a path that does not exist (it takes the step from the name).
TEST(DistTrainCli, ResumeOnTwoRanksRepeatsTheStraightRun) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 8);
  auto two_ranks = [&](const std::string& out, std::vector<std::string> extra0,
                       std::vector<std::string> extra1) {
    LaunchedRanks run = start_idiff({train_args(data.path(), logs.file(out), extra0),
                                     train_args(data.path(), logs.file(out + "_r1"), extra1)},
                                    dir);
    run.wait_all();
    EXPECT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
    return run.ranks[0]->out();
  };
  const std::vector<std::string> to4 = {"--max_steps", "4", "--ema_rate", "0.9"};
  two_ranks("straight", to4, to4);
  two_ranks("first", {"--max_steps", "2", "--ema_rate", "0.9"},
            {"--max_steps", "2", "--ema_rate", "0.9"});
  const std::string out =
      two_ranks("second", with(to4, {"--resume_checkpoint", logs.file("first/model000002.pt")}),
                with(to4, {"--resume_checkpoint", logs.file("nowhere/model000002.pt")}));
  EXPECT_CONTAINS(out, "loading optimizer state from checkpoint");
  for (const char* name : {"model000004.pt", "ema_0.9_000004.pt"}) {
    expect_same_checkpoint(logs.file(std::string("straight/") + name),
                           logs.file(std::string("second/") + name), 1e-6);
  }
}

// WORLD_SIZE=1 under a launcher goes through the process group (and the gradient
// reducer) and gives the plain run's checkpoint.
TEST(DistTrainCli, WorldSizeOneIsThePlainRun) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 8);
  const std::vector<std::string> common = {"--max_steps", "2", "--schedule_sampler",
                                           "loss-second-moment"};
  LaunchedRanks run = start_idiff({train_args(data.path(), logs.file("one"), common)}, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0})) << run.describe();
  EXPECT_CONTAINS(run.ranks[0]->out(), "distributed: rank 0 of 1 (local rank 0, torchrun");
  // The plain run with the same thread count (it changes the order of the sums).
  WorkerProcess plain(with({IDIFF_EXE}, train_args(data.path(), logs.file("plain"), common)),
                      {{"OMP_NUM_THREADS", "1"}}, dir.path(), "plain");
  ASSERT_EQ(plain.wait(), 0) << plain.err();
  EXPECT_EQ(plain.out().find("distributed:"), std::string::npos);
  expect_same_checkpoint(logs.file("one/model000002.pt"), logs.file("plain/model000002.pt"), 0.0);
  expect_same_checkpoint(logs.file("one/ema_0.9999_000002.pt"),
                         logs.file("plain/ema_0.9999_000002.pt"), 0.0);
}

// A rank killed mid-run: the other exits non-zero with the distributed error well within
// --dist_timeout, and the checkpoints written before are complete.
void kill_one_rank(int victim) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 8);
  const std::vector<std::string> common = {"--save_interval", "1", "--dist_timeout", "20"};
  LaunchedRanks run = start_idiff({train_args(data.path(), logs.path(), common),
                                   train_args(data.path(), logs.file("r1"), common)},
                                  dir);
  ASSERT_TRUE(wait_for_file(logs.file("model000002.pt"))) << run.describe();
  run.ranks[victim]->kill();
  const auto start = Clock::now();
  const int survivor = 1 - victim;
  const int code = run.ranks[survivor]->wait();
  EXPECT_LT(seconds_since(start), 20.0) << "the survivor waited for the timeout";
  run.ranks[victim]->wait();
  EXPECT_EQ(code, 1) << run.describe();
  const std::string err = run.ranks[survivor]->err();
  EXPECT_CONTAINS(err, "idiff: error: distributed ");
  EXPECT_CONTAINS(
      err, "failed on rank " + std::to_string(survivor) + " of 2 (gloo, --dist_timeout 20 s)");
  // Every checkpoint file there is complete and loads.
  int checkpoints = 0;
  for (const auto& name : split(run_shell("ls " + logs.path()).out, '\n')) {
    if (name.size() < 4 || name.substr(name.size() - 3) != ".pt") continue;
    ++checkpoints;
    if (name.rfind("opt", 0) == 0) {
      EXPECT_NO_THROW(read_pt(logs.file(name))) << name;
    } else {
      EXPECT_NO_THROW(load_tensor_file(logs.file(name))) << name;
    }
  }
  EXPECT_GE(checkpoints, 4);  // steps 1 and 2 at least (the victim may die while saving)
}

TEST(DistTrainCli, KilledRankOneMakesRankZeroExitWithAnError) {
  kill_one_rank(1);
}
TEST(DistTrainCli, KilledRankZeroMakesRankOneExitWithAnError) {
  kill_one_rank(0);
}

// SIGINT to one rank stops both after the same step; rank 0 saves that step.
TEST(DistTrainCli, SignalToOneRankStopsAllAtTheSameStep) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 8);
  LaunchedRanks run =
      start_idiff({train_args(data.path(), logs.path(), {"--dist_timeout", "60"}),
                   train_args(data.path(), logs.file("r1"), {"--dist_timeout", "60"})},
                  dir);
  // The first log dump: step 1 is done, so rank 1 is inside the loop with its handlers set.
  bool training = false;
  for (int i = 0; i < 600 && !training; ++i) {
    std::ifstream csv(logs.file("progress.csv"));
    std::string header;
    training = std::getline(csv, header) && !header.empty();
    if (!training) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(training) << run.describe();
  ::kill(run.ranks[1]->pid(), SIGINT);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  const std::string out = run.ranks[0]->out();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      out, m, std::regex("stopped by another rank.s stop request after step (\\d+)")))
      << out;
  char name[32];
  std::snprintf(name, sizeof(name), "model%06d.pt", std::stoi(m[1]));
  EXPECT_NO_THROW(load_tensor_file(logs.file(name))) << name;
  EXPECT_FALSE(exists(logs.file("r1")));
}

// A tiny model checkpoint and x_T for 5 samples.
void write_sampling_inputs(const TempDir& dir) {
  at::manual_seed(11);
  save_tensor_file(dir.file("model.pt"), state_dict(*create_model(tiny_model())));
  TensorMap noise;
  noise.insert("x_T", at::randn({5, 3, 32, 32}));
  save_tensor_file(dir.file("noise.safetensors"), noise);
}

std::vector<std::string> sample_args(const TempDir& in, const std::string& log_dir) {
  return with(
      {"sample", "--model_path", in.file("model.pt"), "--log_dir", log_dir, "--num_samples", "5",
       "--batch_size", "2", "--use_ddim", "True", "--timestep_respacing", "ddim4", "--device",
       "cpu", "--initial_noise", in.file("noise.safetensors"), "--grid_size", "4"},
      tiny_flags());
}

// 2 ranks: one npz of exactly --num_samples images (rounds of 2 + 2, then 1 + 0), the same
// images as one process from the same x_T; rank 1 writes nothing.
TEST(DistSampleCli, TwoRanksWriteOneFileOfExactlyNumSamples) {
  TempDir in, dir, logs;
  write_sampling_inputs(in);
  LaunchedRanks run =
      start_idiff({sample_args(in, logs.file("r0")), sample_args(in, logs.file("r1"))}, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  EXPECT_FALSE(exists(logs.file("r1")));
  const TensorMap two = read_npz(logs.file("r0/samples_5x32x32x3.npz"));
  EXPECT_EQ(two.at("arr_0").sizes(), (std::vector<int64_t>{5, 32, 32, 3}));
  EXPECT_TRUE(exists(logs.file("r0/samples_grid.png")));
  WorkerProcess one(with({IDIFF_EXE}, sample_args(in, logs.file("one"))),
                    {{"OMP_NUM_THREADS", "1"}}, dir.path(), "one");
  ASSERT_EQ(one.wait(), 0) << one.err();
  const TensorMap single = read_npz(logs.file("one/samples_5x32x32x3.npz"));
  const at::Tensor diff = (two.at("arr_0").to(at::kInt) - single.at("arr_0").to(at::kInt)).abs();
  EXPECT_LE(diff.max().item<int>(), 1) << "the ranks' samples are not the one process's";
}

// `idiff nll` on 2 ranks: each evaluates its shard, rank 0 writes the terms.
TEST(DistSampleCli, NllOnTwoRanks) {
  TempDir in, data, dir, logs;
  write_shape_folder(data.path(), 8);
  at::manual_seed(12);
  save_tensor_file(in.file("model.pt"), state_dict(*create_model(tiny_model())));
  auto args = [&](const std::string& log_dir) {
    return with({"nll", "--model_path", in.file("model.pt"), "--data_dir", data.path(), "--log_dir",
                 log_dir, "--num_samples", "6", "--batch_size", "2", "--device", "cpu",
                 "--num_workers", "1", "--diffusion_steps", "4", "--noise_schedule", "cosine"},
                tiny_flags());
  };
  LaunchedRanks run = start_idiff({args(logs.file("r0")), args(logs.file("r1"))}, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  EXPECT_FALSE(exists(logs.file("r1")));
  // Rounds of 2 x 2 images until 6 are done: 8.
  EXPECT_CONTAINS(run.ranks[0]->out(), "bits/dim over 8 images: ");
  const TensorMap vb = read_npz(logs.file("r0/vb_terms.npz"));
  EXPECT_EQ(vb.at("arr_0").sizes(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(at::isfinite(vb.at("arr_0")).all().item<bool>());
}

// Ranks started with different model flags: every rank stops with an error naming the
// flag, before any collective could abort (gloo::EnforceNotMet, exit 134).
TEST(DistTrainCli, RanksWithDifferentFlagsNameTheFlag) {
  TempDir data, dir, logs;
  write_shape_folder(data.path(), 4);
  LaunchedRanks run = start_idiff(
      {train_args(data.path(), logs.file("r0"), {"--max_steps", "1"}),
       train_args(data.path(), logs.file("r1"), {"--max_steps", "1", "--num_channels", "64"})},
      dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{2, 2})) << run.describe();
  EXPECT_CONTAINS(run.ranks[0]->err(),
                  "the ranks disagree on --num_channels: '32' on rank 0, something else on rank 1");
  EXPECT_CONTAINS(run.ranks[1]->err(), "the ranks disagree on --num_channels: '64' on rank 1");
}

// The same for sampling: the ranks compare their flags before sampling anything.
TEST(DistSampleCli, RanksWithDifferentFlagsNameTheFlag) {
  TempDir dir, logs;
  const auto args = [&](const std::string& log, const std::string& steps) {
    return with({"sample", "--model_path", dir.file("model.pt"), "--log_dir", log, "--device",
                 "cpu", "--num_samples", "2", "--batch_size", "1", "--diffusion_steps", steps},
                tiny_flags());
  };
  LaunchedRanks run =
      start_idiff({args(logs.file("r0"), "1000"), args(logs.file("r1"), "500")}, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{2, 2})) << run.describe();
  EXPECT_CONTAINS(
      run.ranks[0]->err(),
      "the ranks disagree on --diffusion_steps: '1000' on rank 0, something else on rank 1");
  // The same model and steps, another sampler: the settings that shape the samples are
  // compared too (the registry's sampler row and the settings it reads).
  const auto sampler_args = [&](const std::string& log, const std::string& sampler) {
    return with(
        {"sample", "--model_path", dir.file("model.pt"), "--log_dir", log, "--device", "cpu",
         "--num_samples", "2", "--batch_size", "1", "--steps", "4", "--sampler", sampler},
        tiny_flags());
  };
  LaunchedRanks samplers = start_idiff(
      {sampler_args(logs.file("s0"), "unipc"), sampler_args(logs.file("s1"), "heun")}, dir);
  samplers.wait_all();
  ASSERT_EQ(samplers.codes, (std::vector<int>{2, 2})) << samplers.describe();
  EXPECT_CONTAINS(samplers.ranks[0]->err(),
                  "the ranks disagree on --sampler: 'unipc' on rank 0, something else on rank 1");
}

// --dist_timeout is a flag of every command and must be positive.
TEST(DistTrainCli, DistTimeoutFlag) {
  for (const char* cmd : {"train", "super-res-train", "sample", "super-res-sample", "nll"}) {
    const RunResult help = run_idiff({cmd, "--help"});
    EXPECT_CONTAINS(help.out, "--dist_timeout") << cmd;
  }
  TempDir data, dir;
  write_shape_folder(data.path(), 4);
  const RunResult r = run_idiff(train_args(data.path(), dir.path(), {"--dist_timeout", "0"}));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_CONTAINS(r.err, "--dist_timeout: 0 is out of range");
}

}  // namespace
}  // namespace idiff::test
