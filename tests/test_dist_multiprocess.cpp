// distributed/ across processes: 2 ranks of this test binary on this machine (Gloo over
// loopback; see test_dist_worker.cpp for what each rank does and checks), started with
// torchrun's variables or through OpenMPI's mpirun, and the faults: a rank that dies,
// stalls or never starts makes the others fail with a clear error within the timeout.
#include "test_dist_util.h"
#include "test_util.h"

#include <chrono>
#include <memory>
#include <regex>
#include <sstream>
#include <vector>

namespace idiff::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Starts `world` ranks of a scenario with torchrun's variables; waits for all.
struct RankRun {
  std::vector<std::unique_ptr<WorkerProcess>> ranks;
  std::vector<int> codes;
};

RankRun run_ranks(const std::string& scenario, int world, const TempDir& dir,
                  std::map<std::string, std::string> extra = {}) {
  const int port = free_port();
  RankRun run;
  for (int r = 0; r < world; ++r) {
    auto env = torchrun_env(r, world, port);
    env.insert(extra.begin(), extra.end());
    run.ranks.push_back(
        std::make_unique<WorkerProcess>(scenario, env, dir.path(), "rank" + std::to_string(r)));
  }
  for (auto& p : run.ranks) run.codes.push_back(p->wait());
  return run;
}

std::string describe(const RankRun& run) {
  std::ostringstream os;
  for (size_t r = 0; r < run.ranks.size(); ++r) {
    os << "--- rank " << r << " exit " << run.codes[r] << "\nstdout:\n"
       << run.ranks[r]->out() << "stderr:\n"
       << run.ranks[r]->err() << "\n";
  }
  return os.str();
}

TEST(DistMultiProcess, CollectivesOverTcp) {
  TempDir dir;
  const RankRun run = run_ranks("collectives", 2, dir);
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << describe(run);
  // Both ranks hold the same averaged tensors, bit for bit.
  std::smatch m0, m1;
  const std::regex ok("rank \\d ok .* mean ([0-9a-f]+)");
  const std::string out0 = run.ranks[0]->out(), out1 = run.ranks[1]->out();
  ASSERT_TRUE(std::regex_search(out0, m0, ok)) << out0;
  ASSERT_TRUE(std::regex_search(out1, m1, ok)) << out1;
  EXPECT_EQ(m0[1], m1[1]);
  EXPECT_CONTAINS(out0, "rank 0 of 2 (local rank 0, torchrun, rendezvous tcp://127.0.0.1:");
  EXPECT_CONTAINS(out1, "gloo on cpu");
}

// Data-parallel AdamW on a small MLP: identical parameters on both ranks after every
// step, equal to one process trained on the concatenated batch.
TEST(DistMultiProcess, DataParallelTrainingMatchesOneProcess) {
  TempDir dir;
  const RankRun run = run_ranks("train", 2, dir);
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << describe(run);
  const std::regex line("rank (\\d) step (\\d+) hash ([0-9a-f]+) err (\\S+)");
  std::map<int, std::vector<std::string>> hashes;  // step -> per-rank hash
  for (int r = 0; r < 2; ++r) {
    const std::string out = run.ranks[r]->out();
    for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
      hashes[std::stoi((*it)[2])].push_back((*it)[3]);
      EXPECT_LE(std::stod((*it)[4]), 1e-5) << it->str();
    }
  }
  ASSERT_EQ(hashes.size(), 4u) << describe(run);
  for (const auto& [step, hs] : hashes) {
    ASSERT_EQ(hs.size(), 2u);
    EXPECT_EQ(hs[0], hs[1]) << "parameters differ between ranks after step " << step;
  }
}

// A rank killed mid-run: the survivor's next collective fails at once (the connection
// drops), long before the 30 s timeout.
TEST(DistMultiProcess, KilledPeerMakesTheOtherExitWithAnError) {
  TempDir dir;
  const auto start = Clock::now();
  const RankRun run = run_ranks("die", 2, dir, {{kDistTimeoutVar, "30"}});
  const double elapsed = seconds_since(start);
  EXPECT_EQ(run.codes[1], 128 + 9) << describe(run);  // SIGKILL
  EXPECT_EQ(run.codes[0], 1) << describe(run);
  EXPECT_CONTAINS(run.ranks[0]->err(),
                  "idiff: error: distributed gradient all_reduce_mean failed on rank 0 of 2 "
                  "(gloo, `dist_timeout` 30 s): another rank exited or could not be reached");
  EXPECT_LT(elapsed, 30.0) << "the survivor waited for the timeout";
}

// A rank that stops answering: the other's collective times out after --dist_timeout.
TEST(DistMultiProcess, StalledPeerTimesOut) {
  TempDir dir;
  const int port = free_port();
  std::vector<std::unique_ptr<WorkerProcess>> ranks;
  for (int r = 0; r < 2; ++r) {
    auto env = torchrun_env(r, 2, port);
    env[kDistTimeoutVar] = "2";
    ranks.push_back(
        std::make_unique<WorkerProcess>("stall", env, dir.path(), "rank" + std::to_string(r)));
  }
  const auto start = Clock::now();
  const int code = ranks[0]->wait();
  const double elapsed = seconds_since(start);
  ranks[1]->kill();
  EXPECT_EQ(code, 1) << ranks[0]->out() << ranks[0]->err();
  EXPECT_CONTAINS(ranks[0]->err(), "distributed gradient all_reduce_mean failed on rank 0 of 2");
  EXPECT_CONTAINS(ranks[0]->err(),
                  "(gloo, `dist_timeout` 2 s): no reply from another rank within the timeout");
  EXPECT_GE(elapsed, 2.0);
  EXPECT_LT(elapsed, 2.0 + 20.0);  // the timeout plus start-up, not a hang
}

// A peer that never starts: rank 0 (serving the store) and rank 1 (connecting to it)
// each give up after the timeout with an error naming the rendezvous.
TEST(DistMultiProcess, MissingPeerFailsTheRendezvous) {
  TempDir dir;
  std::vector<std::unique_ptr<WorkerProcess>> alone;
  for (int r = 0; r < 2; ++r) {
    auto env = torchrun_env(r, 2, free_port());  // a port of its own: no partner
    env[kDistTimeoutVar] = "1";
    alone.push_back(
        std::make_unique<WorkerProcess>("join", env, dir.path(), "alone" + std::to_string(r)));
  }
  const auto start = Clock::now();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(alone[r]->wait(), 1) << alone[r]->out() << alone[r]->err();
    const std::string err = alone[r]->err();
    EXPECT_CONTAINS(err,
                    "idiff: error: distributed rendezvous at MASTER_ADDR=127.0.0.1 MASTER_PORT=");
    EXPECT_CONTAINS(err,
                    "failed for rank " + std::to_string(r) + " of 2 within `dist_timeout` 1 s");
  }
  EXPECT_LT(seconds_since(start), 1.0 + 20.0);
}

// The same collectives launched by OpenMPI's mpirun (OMPI_COMM_WORLD_* variables), with
// the rendezvous at MASTER_ADDR/MASTER_PORT or in a shared file.
std::string mpirun(const std::string& scenario, const std::map<std::string, std::string>& env) {
  std::string cmd = "timeout 120 mpirun --allow-run-as-root --oversubscribe -n 2";
  cmd += std::string(" -x ") + kDistWorkerVar + "=" + scenario;
  for (const auto& [k, v] : env) cmd += " -x " + k + "=" + v;
  cmd += " /proc/" + std::to_string(getpid()) + "/exe";
  return cmd;
}

TEST(DistMultiProcess, MpirunWithMasterAddr) {
  const RunResult r = run_shell(mpirun(
      "collectives", {{"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(free_port())}}));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out,
                  "rank 0 ok rank 0 of 2 (local rank 0, mpirun, rendezvous tcp://127.0.0.1:");
  EXPECT_CONTAINS(r.out, "rank 1 ok rank 1 of 2 (local rank 1, mpirun");
}

// torchrun (PyTorch's launcher, from the venv) can start a non-Python program.
TEST(DistMultiProcess, TorchrunLaunch) {
  ASSERT_FALSE(python().empty()) << "configure with -DIDIFF_PYTHON=<python with torch>";
  const std::string cmd =
      std::string("OMP_NUM_THREADS=1 ") + kDistWorkerVar + "=collectives timeout 120 " + python() +
      " -m torch.distributed.run --nproc_per_node 2 --no-python"
      " --master_addr 127.0.0.1 --master_port " +
      std::to_string(free_port()) + " /proc/" + std::to_string(getpid()) + "/exe";
  const RunResult r = run_shell(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "rank 0 ok rank 0 of 2 (local rank 0, torchrun");
  EXPECT_CONTAINS(r.out, "rank 1 ok rank 1 of 2 (local rank 1, torchrun");
  EXPECT_EQ(r.err.find("failed to bind"), std::string::npos) << r.err;  // the agent's store is used
}

TEST(DistMultiProcess, MpirunWithSharedFile) {
  TempDir dir;
  const RunResult r =
      run_shell(mpirun("collectives", {{"IDIFF_DIST_FILE", dir.file("rendezvous")}}));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_CONTAINS(r.out, "rank 0 ok rank 0 of 2 (local rank 0, mpirun, rendezvous file://");
  EXPECT_CONTAINS(r.out, "rank 1 ok");
}

}  // namespace
}  // namespace idiff::test
