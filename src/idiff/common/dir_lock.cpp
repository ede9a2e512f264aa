#include "idiff/common/dir_lock.h"

#include "idiff/common/error.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <utility>

namespace idiff {
namespace {

std::string holder_text() {
  char host[256] = "unknown host";
  ::gethostname(host, sizeof(host) - 1);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char when[64];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
  return str("process ", ::getpid(), " on ", host, ", since ", when);
}

std::string read_holder(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "another process";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s.empty() ? "another process" : s;
}

}  // namespace

DirLock::DirLock(const std::string& dir) {
  const std::string path = dir + "/.idiff.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  IDIFF_REQUIRE(fd_ >= 0, FileError, path, ": cannot create the log folder's lock file (",
                std::strerror(errno), ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? read_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    IDIFF_REQUIRE(err != EWOULDBLOCK, FileError, "log folder ", dir, " is in use by another run (",
                  holder, "); give each run its own `log_dir`");
    throw FileError(str(path, ": cannot lock (", std::strerror(err), ")"));
  }
  const std::string text = holder_text() + "\n";
  // Best effort: the lock holds without the note of who holds it.
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] const ssize_t n = ::pwrite(fd_, text.data(), text.size(), 0);
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

DirLock::DirLock(DirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

}  // namespace idiff
