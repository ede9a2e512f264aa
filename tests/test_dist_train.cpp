// Training, sampling and evaluation across processes (issue 7): the TrainLoop on 2 ranks
// (Gloo over loopback) stays identical on both and equals one process trained on the
// concatenated batch with the same timesteps and noise; the idiff program launched as 2
// ranks (by environment variables as torchrun sets them, and by mpirun) trains, samples and
// evaluates with rank 0 alone writing; WORLD_SIZE=1 under a launcher is the plain run; a
// rank that dies or is signalled stops the others cleanly.
//
// The worker side (train_loop_worker) runs in copies of this test binary started by
// test_dist_worker.cpp's mechanism; the CLI tests start the idiff program itself.
#include "test_dist_util.h"
#include "test_train_util.h"

#include "idiff/common/error.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/diffusion/resample.h"
#include "idiff/dist/dist_context.h"
#include "idiff/io/npz.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/ema.h"
#include "idiff/train/train_loop.h"

#include <ATen/CPUGeneratorImpl.h>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

namespace idiff::test {

// ---- worker side -----------------------------------------------------------------------

namespace {

constexpr int64_t kLocalBatch = 2;  // --batch_size per rank

uint64_t hash_of(const std::vector<at::Tensor>& ts) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes
  for (const auto& t : ts) {
    const at::Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

double rel_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  std::vector<at::Tensor> fa, fb;
  for (size_t i = 0; i < a.size(); ++i) {
    fa.push_back(a[i].detach().reshape({-1}).to(at::kDouble));
    fb.push_back(b[i].detach().reshape({-1}).to(at::kDouble));
  }
  return rel_error(at::cat(fa), at::cat(fb));
}

// The concatenated batch of all ranks for step k, with its timesteps and noise drawn from
// a seed shared by every rank (and by the one-process reference); rank r trains on rows
// [r * kLocalBatch, (r + 1) * kLocalBatch).
TrainBatch global_batch(int64_t step, int64_t global, int64_t num_timesteps) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(500 + static_cast<uint64_t>(step));
  const at::Tensor pool =
      at::upsample_bilinear2d(at::rand({6, 3, 8, 8}, gen) * 2 - 1, {32, 32}, false);
  std::vector<int64_t> idx, ts;
  for (int64_t i = 0; i < global; ++i) {
    idx.push_back((step * global + i) % pool.size(0));
    ts.push_back((step * global + i) % num_timesteps);  // every t equally often
  }
  TrainBatch b;
  b.images = pool.index_select(0, at::tensor(idx));
  b.timesteps = at::tensor(ts, at::kLong);
  b.noise = at::randn(b.images.sizes(), gen);
  return b;
}

TrainBatch rank_slice(const TrainBatch& g, int64_t rank) {
  TrainBatch b;
  b.images = g.images.narrow(0, rank * kLocalBatch, kLocalBatch);
  b.timesteps = g.timesteps.narrow(0, rank * kLocalBatch, kLocalBatch);
  b.noise = g.noise.narrow(0, rank * kLocalBatch, kLocalBatch);
  return b;
}

}  // namespace

// "trainloop": fp32 with the loss-aware sampler on a 2-step cosine diffusion (it warms up
// after 5 steps, so the last step's loss weights come from every rank's gathered losses),
// microbatches of 1 (gradients accumulate locally and are averaged once). Each step prints
//   rank R step K hash H ema E err X ema_err Y sampler S
// with X, Y the relative differences from the one-process reference.
// "trainloop-fp16": the reference's fp16 scheme; at the second step rank 1's batch is NaN,
// and both ranks must skip the step and lower the loss scale together.
int train_loop_worker(DistContext& ctx, const std::string& scenario) {
  const bool fp16 = scenario == "trainloop-fp16";
  const int64_t world = ctx.world_size(), rank = ctx.rank(), global = kLocalBatch * world;
  const int steps = fp16 ? 2 : 6;
  DiffusionConfig dc = tiny_diffusion();
  if (!fp16) {
    dc.diffusion_steps = 2;
    dc.noise_schedule = "cosine";
  }
  const GaussianDiffusion diffusion = create_gaussian_diffusion(dc);
  const std::string sampler = fp16 ? "uniform" : "loss-second-moment";
  TrainConfig c;
  // Adam turns rounding differences in near-zero gradients into lr-sized steps; 1e-4 keeps
  // them well under the 1e-5 tolerance while a wrong gradient would miss it by far.
  c.lr = 1e-4;
  c.ema_rate = "0.9";
  c.device = "cpu";
  c.use_fp16 = fp16;
  Logger quiet("", true);

  // The ranks start from different weights: the loop must broadcast rank 0's.
  at::manual_seed(1 + 100 * static_cast<uint64_t>(rank));
  TrainConfig dist_config = c;
  dist_config.batch_size = kLocalBatch;
  dist_config.microbatch = 1;
  TrainLoop loop(create_model(tiny_model()), diffusion,
                 create_named_schedule_sampler(sampler, diffusion), nullptr, dist_config, quiet,
                 at::kCPU, &ctx);
  at::manual_seed(1);
  TrainConfig ref_config = c;
  ref_config.batch_size = global;
  Logger ref_quiet("", true);
  TrainLoop ref(create_model(tiny_model()), diffusion,
                create_named_schedule_sampler(sampler, diffusion), nullptr, ref_config, ref_quiet,
                at::kCPU);

  for (int k = 0; k < steps; ++k) {
    const TrainBatch g = global_batch(k, global, diffusion.num_timesteps());
    TrainBatch mine = rank_slice(g, rank);
    if (fp16 && k == 1 && rank == 1) mine.images = at::full_like(mine.images, NAN);
    const auto before = clone_tensors(loop.master_params());
    loop.run_step(mine);
    if (!(fp16 && k == 1)) ref.run_step(g);
    const std::vector<double> w = loop.schedule_sampler().weights();
    std::printf(
        "rank %lld step %d hash %llx ema %llx err %.3g ema_err %.3g sampler %llx scale %g changed "
        "%d\n",
        static_cast<long long>(rank), k,
        static_cast<unsigned long long>(hash_of(loop.master_params())),
        static_cast<unsigned long long>(hash_of(loop.ema_params()[0])),
        rel_diff(loop.master_params(), ref.master_params()),
        rel_diff(loop.ema_params()[0], ref.ema_params()[0]),
        static_cast<unsigned long long>(hash_of({at::tensor(w, at::kDouble)})),
        loop.lg_loss_scale(), rel_diff(loop.master_params(), before) > 0 ? 1 : 0);
    if (!fp16) {
      const std::vector<double> rw = ref.schedule_sampler().weights();
      std::printf("rank %lld step %d sampler_err %.3g uniform %d\n", static_cast<long long>(rank),
                  k, rel_error(at::tensor(w, at::kDouble), at::tensor(rw, at::kDouble)),
                  w.front() == w.back() ? 1 : 0);
    }
  }
  if (!fp16) {
    // The logged loss is the mean over every rank's samples: the reference's, to rounding.
    loop.dump_logs();
    ref.dump_logs();
    std::printf("rank %lld loss %.9g ref_loss %.9g\n", static_cast<long long>(rank),
                loop.last_logged().at("loss"), ref.last_logged().at("loss"));
  }
  std::printf("rank %lld ok\n", static_cast<long long>(rank));
  return 0;
}

// ---- parent side -----------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct RankRun {
  std::vector<std::unique_ptr<WorkerProcess>> ranks;
  std::vector<int> codes;
  std::string describe() const {
    std::ostringstream os;
    for (size_t r = 0; r < ranks.size(); ++r) {
      os << "--- rank " << r << " exit " << (r < codes.size() ? codes[r] : -1) << "\nstdout:\n"
         << ranks[r]->out() << "stderr:\n"
         << ranks[r]->err() << "\n";
    }
    return os.str();
  }
  void wait_all() {
    for (auto& p : ranks) codes.push_back(p->wait());
  }
};

// One thread per rank (the machine's cores are shared by the ranks), c10d's retry
// warnings silenced.
std::map<std::string, std::string> rank_env(int rank, int world, int port) {
  auto env = torchrun_env(rank, world, port);
  env["OMP_NUM_THREADS"] = "1";
  env["TORCH_CPP_LOG_LEVEL"] = "ERROR";
  return env;
}

// Starts the worker scenario on `world` ranks of this test binary.
RankRun start_workers(const std::string& scenario, int world, const TempDir& dir) {
  const int port = free_port();
  RankRun run;
  for (int r = 0; r < world; ++r) {
    run.ranks.push_back(std::make_unique<WorkerProcess>(scenario, rank_env(r, world, port),
                                                        dir.path(), "rank" + std::to_string(r)));
  }
  return run;
}

// Starts the idiff program as `args_of(r).size()` ranks, rank r with the arguments args_of[r].
RankRun start_idiff(const std::vector<std::vector<std::string>>& args_of, const TempDir& dir,
                    std::map<std::string, std::string> extra = {}) {
  const int port = free_port();
  const int world = static_cast<int>(args_of.size());
  RankRun run;
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> argv{IDIFF_EXE};
    argv.insert(argv.end(), args_of[r].begin(), args_of[r].end());
    auto env = rank_env(r, world, port);
    for (const auto& [k, v] : extra) env[k] = v;
    run.ranks.push_back(
        std::make_unique<WorkerProcess>(argv, env, dir.path(), "idiff" + std::to_string(r)));
  }
  return run;
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

TEST(DistTrain, TwoRanksMatchOneProcessOnTheConcatenatedBatch) {
  TempDir dir;
  RankRun run = start_workers("trainloop", 2, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  const std::regex step_line(
      "rank (\\d) step (\\d+) hash (\\w+) ema (\\w+) err (\\S+) ema_err (\\S+) sampler (\\w+)");
  const std::regex sampler_line("rank (\\d) step (\\d+) sampler_err (\\S+) uniform (\\d)");
  std::map<int, std::vector<std::string>> hashes;  // step -> "params ema sampler" per rank
  std::map<int, int> uniform;
  for (int r = 0; r < 2; ++r) {
    const std::string out = run.ranks[r]->out();
    EXPECT_CONTAINS(out, "rank " + std::to_string(r) + " ok");
    for (std::sregex_iterator it(out.begin(), out.end(), step_line), end; it != end; ++it) {
      const auto& m = *it;
      hashes[std::stoi(m[2])].push_back(m.str(3) + " " + m.str(4) + " " + m.str(7));
      EXPECT_LE(std::stod(m[5]), 1e-5) << m.str();  // parameters
      EXPECT_LE(std::stod(m[6]), 1e-5) << m.str();  // EMA
    }
    for (std::sregex_iterator it(out.begin(), out.end(), sampler_line), end; it != end; ++it) {
      EXPECT_LE(std::stod((*it)[3]), 1e-6) << it->str();
      uniform[std::stoi((*it)[2])] = std::stoi((*it)[4]);
    }
    std::smatch loss;
    ASSERT_TRUE(std::regex_search(out, loss, std::regex("loss (\\S+) ref_loss (\\S+)"))) << out;
    EXPECT_NEAR(std::stod(loss[1]), std::stod(loss[2]), 1e-5 * std::abs(std::stod(loss[2])));
  }
  ASSERT_EQ(hashes.size(), 6u) << run.describe();
  for (const auto& [step, hs] : hashes) {
    ASSERT_EQ(hs.size(), 2u);
    EXPECT_EQ(hs[0], hs[1]) << "ranks differ after step " << step;
  }
  // The loss-aware sampler warmed up on the gathered losses of both ranks before the last step.
  EXPECT_EQ(uniform[0], 1);
  EXPECT_EQ(uniform[5], 0);
}

TEST(DistTrain, Fp16RanksSkipABadStepTogether) {
  TempDir dir;
  RankRun run = start_workers("trainloop-fp16", 2, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  const std::regex line(
      "rank (\\d) step (\\d+) hash (\\w+) ema (\\w+) err (\\S+) ema_err \\S+ sampler \\w+ "
      "scale (\\S+) changed (\\d)");
  std::map<int, std::vector<std::string>> state;
  for (int r = 0; r < 2; ++r) {
    const std::string out = run.ranks[r]->out();
    for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
      const auto& m = *it;
      const int step = std::stoi(m[2]);
      state[step].push_back(m.str(3) + " " + m.str(4) + " " + m.str(6) + " " + m.str(7));
      EXPECT_LE(std::stod(m[5]), 1e-3) << m.str();  // fp16 sums round differently
      EXPECT_EQ(m.str(7), step == 1 ? "0" : "1") << m.str();
    }
  }
  ASSERT_EQ(state.size(), 2u) << run.describe();
  for (const auto& [step, s] : state) {
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0], s[1]) << "ranks differ after step " << step;
  }
  EXPECT_CONTAINS(state[1][0], " 19.001 0");  // 20 + 0.001 - 1: both lowered the scale
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
  RankRun run = start_idiff({train_args(data.path(), logs.file("r0"), common),
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
    RankRun run = start_idiff({train_args(data.path(), logs.file(out), extra0),
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
  RankRun run = start_idiff({train_args(data.path(), logs.file("one"), common)}, dir);
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
  RankRun run = start_idiff({train_args(data.path(), logs.path(), common),
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
  RankRun run = start_idiff({train_args(data.path(), logs.path(), {"--dist_timeout", "60"}),
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
      out, m, std::regex("stopped by a signal to another rank after step (\\d+)")))
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
  RankRun run =
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
  RankRun run = start_idiff({args(logs.file("r0")), args(logs.file("r1"))}, dir);
  run.wait_all();
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << run.describe();
  EXPECT_FALSE(exists(logs.file("r1")));
  // Rounds of 2 x 2 images until 6 are done: 8.
  EXPECT_CONTAINS(run.ranks[0]->out(), "bits/dim over 8 images: ");
  const TensorMap vb = read_npz(logs.file("r0/vb_terms.npz"));
  EXPECT_EQ(vb.at("arr_0").sizes(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(at::isfinite(vb.at("arr_0")).all().item<bool>());
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
  EXPECT_CONTAINS(r.err, "--dist_timeout 0: expected a number of seconds > 0");
}

}  // namespace
}  // namespace idiff::test
