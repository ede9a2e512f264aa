// Helpers of the distributed/ tests: message checks and running copies of this test binary as
// the ranks of a multi-process run (test_dist_worker.cpp turns such a copy into a worker).
#pragma once

#include <gtest/gtest.h>

#include <c10/core/Device.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

// EXPECT that the string `text` contains `needle`.
#define EXPECT_CONTAINS(text, needle)                          \
  EXPECT_NE(std::string(text).find(needle), std::string::npos) \
      << "expected \"" << (needle) << "\" in: " << (text)

namespace idiff::test {

// The environment variable that makes this test binary a dist worker, running the named
// scenario (see test_dist_worker.cpp) instead of the tests.
constexpr const char* kDistWorkerVar = "IDIFF_TEST_DIST_WORKER";
// Its collective timeout in seconds (--dist_timeout), default 30.
constexpr const char* kDistTimeoutVar = "IDIFF_TEST_DIST_TIMEOUT";

// Runs the worker scenario when this process was started as one; returns otherwise.
void maybe_run_dist_worker();

// A free TCP port on the loopback interface (bound once by the kernel's choice, then
// released).
int free_port();

// One worker process of this binary, its stdout and stderr going to files.
class WorkerProcess {
 public:
  // Starts `scenario` with the extra environment variables `env` (added to this
  // process's environment); output under dir/<name>.out and .err.
  WorkerProcess(const std::string& scenario, const std::map<std::string, std::string>& env,
                const std::string& dir, const std::string& name);
  // Starts the program argv[0] (a path) with the arguments argv[1..] instead, e.g. the
  // idiff program as one rank of a run.
  WorkerProcess(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                const std::string& dir, const std::string& name);
  ~WorkerProcess();  // kills the process when it still runs
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Waits for the exit; returns the exit code (128 + signal when killed).
  int wait();
  void kill();
  std::string out() const;
  std::string err() const;
  pid_t pid() const { return pid_; }

 private:
  void spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env);

  pid_t pid_ = -1;
  int status_ = -1;
  std::string out_path_, err_path_;
};

// Environment of rank `rank` of `world` in torchrun's naming, rendezvous at 127.0.0.1:port.
std::map<std::string, std::string> torchrun_env(int rank, int world, int port);

}  // namespace idiff::test

namespace idiff {
class DistContext;
}

namespace idiff::test {

// The processes of one multi-process run, rank r at index r.
struct LaunchedRanks {
  std::vector<std::unique_ptr<WorkerProcess>> ranks;
  std::vector<int> codes;  // exit codes, after wait_all()
  void wait_all();
  // Each rank's exit code, stdout and stderr, for failure messages.
  std::string describe() const;
};

// rank_env: torchrun_env plus one thread per rank (the machine's cores are shared by the
// ranks) and c10d's retry warnings silenced.
std::map<std::string, std::string> rank_env(int rank, int world, int port);
// `world` ranks of this test binary running a worker scenario (rank_env, a free port).
LaunchedRanks start_workers(const std::string& scenario, int world, const std::string& dir);
// Programs as ranks: rank r runs argvs[r] (argv[0] a path) with rank_env.
LaunchedRanks start_ranks(const std::vector<std::vector<std::string>>& argvs,
                          const std::string& dir);

// WORLD_SIZE=1 under a launcher: a real group of one rank on `device` with `backend`
// ("gloo", "nccl"), same code as many: every collective returns its input, parameters and
// gradients pass through (test_dist.cpp; the CPU suite runs it with Gloo, the gpu label
// with NCCL).
void check_world_size_one(const c10::Device& device, const std::string& backend);

// The worker scenarios of test_dist_train.cpp ("trainloop", "trainloop-fp16"): TrainLoop
// data-parallel on `ctx`; returns the exit code.
int train_loop_worker(DistContext& ctx, const std::string& scenario);

}  // namespace idiff::test
