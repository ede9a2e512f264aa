// The Python reference as a child process: bench/reference_bench.py --serve, driven over
// pipes one JSON request per line, so that idiff and the reference take turns on the same
// machine within one run (the reference sleeps on its stdin while idiff measures).
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>
#include <cstdio>
#include <string>

namespace idiff::bench {

struct ReferenceOptions {
  std::string python;   // interpreter with torch (the venv's)
  std::string script;   // bench/reference_bench.py
  std::string ref_dir;  // a checkout of the reference (holds improved_diffusion/)
  int threads = 0;      // intra-op threads, the same as idiff's
  std::string device = "cpu";
};

class ReferenceProcess {
 public:
  // Starts the process and waits for its "ready" line; throws idiff::Error if it fails.
  explicit ReferenceProcess(const ReferenceOptions& options);
  ~ReferenceProcess();
  ReferenceProcess(const ReferenceProcess&) = delete;
  ReferenceProcess& operator=(const ReferenceProcess&) = delete;

  // Sends one request and returns the answer (an object with "error" when it failed).
  nlohmann::json request(const nlohmann::json& req);
  const nlohmann::json& hello() const { return hello_; }

 private:
  nlohmann::json read_answer();

  pid_t pid_ = -1;
  FILE* to_child_ = nullptr;
  FILE* from_child_ = nullptr;
  nlohmann::json hello_;
};

}  // namespace idiff::bench
