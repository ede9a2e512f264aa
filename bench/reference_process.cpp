#include "reference_process.h"

#include "idiff/common/error.h"

#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <vector>

namespace idiff::bench {

ReferenceProcess::ReferenceProcess(const ReferenceOptions& o) {
  int in_pipe[2], out_pipe[2];  // in: parent -> child stdin; out: child stdout -> parent
  IDIFF_REQUIRE(pipe(in_pipe) == 0 && pipe(out_pipe) == 0, Error,
                "--reference: pipe failed: ", std::strerror(errno));
  std::vector<std::string> args = {
      o.python,   o.script, "--serve", "--ref", o.ref_dir, "--threads", std::to_string(o.threads),
      "--device", o.device};
  std::signal(SIGPIPE, SIG_IGN);  // a reference that died is an error answer, not our death
  std::fflush(nullptr);
  pid_ = fork();
  IDIFF_REQUIRE(pid_ >= 0, Error, "--reference: fork failed: ", std::strerror(errno));
  if (pid_ == 0) {
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    close(in_pipe[0]);
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(out_pipe[1]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "idiff_bench: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  to_child_ = fdopen(in_pipe[1], "w");
  from_child_ = fdopen(out_pipe[0], "r");
  hello_ = read_answer();
  IDIFF_REQUIRE(hello_.value("ready", false), Error, "--reference: ", o.script,
                " did not start: ", hello_.dump());
}

ReferenceProcess::~ReferenceProcess() {
  if (to_child_) {
    std::fputs("{\"quit\": true}\n", to_child_);
    std::fclose(to_child_);
  }
  if (from_child_) std::fclose(from_child_);
  if (pid_ > 0) {
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

nlohmann::json ReferenceProcess::read_answer() {
  char* line = nullptr;
  size_t cap = 0;
  nlohmann::json answer;
  while (true) {
    const ssize_t n = getline(&line, &cap, from_child_);
    if (n < 0) {
      answer = {{"error", "the reference process exited"}};
      break;
    }
    const std::string text(line, static_cast<size_t>(n));
    if (text.empty() || text[0] != '{') continue;  // anything else the reference prints
    answer = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (answer.is_discarded()) answer = {{"error", "unreadable answer: " + text}};
    break;
  }
  std::free(line);
  return answer;
}

nlohmann::json ReferenceProcess::request(const nlohmann::json& req) {
  const std::string line = req.dump() + "\n";
  if (std::fputs(line.c_str(), to_child_) < 0 || std::fflush(to_child_) != 0) {
    return {{"error", "the reference process is gone"}};
  }
  return read_answer();
}

}  // namespace idiff::bench
