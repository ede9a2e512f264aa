#include "test_serve_util.h"

#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace idiff::test {

SampleJob serve_test_job(const TempDir& dir, bool guided) {
  SampleJob job;
  job.model = tiny_model();
  job.diffusion = tiny_diffusion();
  if (guided) {
    job.model.class_cond = true;
    job.model.class_dropout_prob = 0.1;
  }
  at::manual_seed(7);
  UNetModel model = create_model(job.model);
  randomize_parameters(model->parameters());
  job.sample.model_path = dir.file("model.pt");
  save_tensor_file(job.sample.model_path, state_dict(*model));
  job.sample.device = "cpu";
  job.sample.sampler = "unipc";
  job.sample.steps = 3;
  return job;
}

std::vector<std::string> serve_test_flags(const TempDir& dir, bool guided) {
  serve_test_job(dir, guided);
  std::vector<std::string> flags =
      cat_args(std::vector<std::string>{"--model_path", dir.file("model.pt"), "--device", "cpu",
                                        "--sampler", "unipc", "--steps", "3"},
               tiny_flags());
  if (guided)
    flags = cat_args(
        flags, std::vector<std::string>{"--class_cond", "True", "--class_dropout_prob", "0.1"});
  return flags;
}

Logger& quiet_logger() {
  static Logger logger("", true);
  return logger;
}

ServerProcess::ServerProcess(const std::vector<std::string>& args) {
  log_path_ = dir_.file("serve.log");
  std::vector<std::string> argv = {IDIFF_EXE, "serve", "--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> c;
    for (auto& a : argv) c.push_back(a.data());
    c.push_back(nullptr);
    execv(c[0], c.data());
    _exit(127);
  }
  const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)/");
  for (int i = 0; i < 600 && port_ == 0; ++i) {
    std::smatch m;
    const std::string text = log();
    if (std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
    int status = 0;
    if (port_ == 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(port_, 0) << log();
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int ServerProcess::stop(int sig, double seconds) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

}  // namespace idiff::test
