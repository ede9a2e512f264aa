// Starting copies of this test binary as dist workers (see test_dist_util.h).
#include "test_dist_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

extern char** environ;

namespace idiff::test {

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw std::runtime_error("could not bind a free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::map<std::string, std::string> torchrun_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(rank)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)}};
}

namespace {

std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw std::runtime_error("readlink /proc/self/exe failed");
  return std::string(buf.data(), static_cast<size_t>(n));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

WorkerProcess::WorkerProcess(const std::string& scenario,
                             const std::map<std::string, std::string>& env, const std::string& dir,
                             const std::string& name)
    : out_path_(dir + "/" + name + ".out"), err_path_(dir + "/" + name + ".err") {
  std::map<std::string, std::string> with_scenario = env;
  with_scenario[kDistWorkerVar] = scenario;
  spawn({self_exe()}, with_scenario);
}

WorkerProcess::WorkerProcess(const std::vector<std::string>& argv,
                             const std::map<std::string, std::string>& env, const std::string& dir,
                             const std::string& name)
    : out_path_(dir + "/" + name + ".out"), err_path_(dir + "/" + name + ".err") {
  spawn(argv, env);
}

void WorkerProcess::spawn(const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) vars[k] = v;
  std::vector<std::string> strings;
  for (const auto& [k, v] : vars) strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  const std::string exe = args.at(0);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  const int rc = posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn failed");
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && status_ < 0) {
    kill();
    wait();
  }
}

int WorkerProcess::wait() {
  if (status_ < 0) {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) throw std::runtime_error("waitpid failed");
    }
    status_ = status;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

void WorkerProcess::kill() {
  if (status_ < 0) ::kill(pid_, SIGKILL);
}

std::string WorkerProcess::out() const {
  return slurp(out_path_);
}
std::string WorkerProcess::err() const {
  return slurp(err_path_);
}

void LaunchedRanks::wait_all() {
  for (auto& p : ranks) codes.push_back(p->wait());
}

std::string LaunchedRanks::describe() const {
  std::ostringstream os;
  for (size_t r = 0; r < ranks.size(); ++r) {
    os << "--- rank " << r << " exit " << (r < codes.size() ? codes[r] : -1) << "\nstdout:\n"
       << ranks[r]->out() << "stderr:\n"
       << ranks[r]->err() << "\n";
  }
  return os.str();
}

std::map<std::string, std::string> rank_env(int rank, int world, int port) {
  auto env = torchrun_env(rank, world, port);
  env["OMP_NUM_THREADS"] = "1";
  env["TORCH_CPP_LOG_LEVEL"] = "ERROR";
  return env;
}

LaunchedRanks start_workers(const std::string& scenario, int world, const std::string& dir) {
  const int port = free_port();
  LaunchedRanks run;
  for (int r = 0; r < world; ++r) {
    run.ranks.push_back(std::make_unique<WorkerProcess>(scenario, rank_env(r, world, port), dir,
                                                        "rank" + std::to_string(r)));
  }
  return run;
}

LaunchedRanks start_ranks(const std::vector<std::vector<std::string>>& argvs,
                          const std::string& dir) {
  const int port = free_port();
  const int world = static_cast<int>(argvs.size());
  LaunchedRanks run;
  for (int r = 0; r < world; ++r) {
    run.ranks.push_back(std::make_unique<WorkerProcess>(argvs[r], rank_env(r, world, port), dir,
                                                        "program" + std::to_string(r)));
  }
  return run;
}

}  // namespace idiff::test
