// Helpers of the server tests: a small model saved for the service, and `idiff serve` run
// as a process on a free loopback port.
#pragma once

#include "test_train_util.h"

#include "idiff/serve/sampling_service.h"

#include <sys/types.h>

#include <string>
#include <vector>

namespace idiff::test {

// The tiny UNet (test_train_util.h) with random weights saved in dir/model.pt; `guided`:
// class-conditional with a null label (classifier-free guidance). Default sampler: unipc,
// 3 steps.
SampleJob serve_test_job(const TempDir& dir, bool guided);
// The same model's flags for `idiff serve` (the checkpoint, the model, the sampler).
std::vector<std::string> serve_test_flags(const TempDir& dir, bool guided);

Logger& quiet_logger();

// `idiff serve --port 0 <args>` in the background; the port it printed.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args);
  ~ServerProcess();  // SIGKILL if still running
  int port() const { return port_; }
  std::string log() const;  // its stdout and stderr so far
  // Sends `sig` and waits (at most `seconds`) for the exit: its exit code, -1 on time-out.
  int stop(int sig, double seconds);

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_path_;
  TempDir dir_;
};

}  // namespace idiff::test
