#include "idiff/common/filesystem.h"

#include "idiff/common/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace idiff {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

// Closes the descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void require_regular(const struct stat& st, const std::string& path, const std::string& what) {
  IDIFF_REQUIRE(S_ISREG(st.st_mode), FileError, what, " ", path, " is not a regular file (it is ",
                kind_of(st.st_mode), ")");
}

}  // namespace

void make_directories(const std::string& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  IDIFF_REQUIRE(!ec, FileError, dir, ": cannot create ", what, " (", ec.message(), ")");
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

std::string parent_dir(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

uint64_t require_regular_file(const std::string& path, const std::string& what) {
  struct stat st {};
  IDIFF_REQUIRE(::stat(path.c_str(), &st) == 0, FileError, path, ": cannot open ", what, " (",
                std::strerror(errno), ")");
  require_regular(st, path, what);
  return static_cast<uint64_t>(st.st_size);
}

std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes,
                                       const std::string& what) {
  // O_NONBLOCK: opening a FIFO returns at once (then fstat refuses it) instead of waiting
  // for a writer; it changes nothing for regular files.
  Fd f{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  IDIFF_REQUIRE(f.fd >= 0, FileError, "cannot open ", what, " ", path, ": ", std::strerror(errno));
  struct stat st {};
  IDIFF_REQUIRE(::fstat(f.fd, &st) == 0, FileError, "cannot read ", what, " ", path, ": ",
                std::strerror(errno));
  require_regular(st, path, what);
  const auto size = static_cast<uint64_t>(st.st_size);
  IDIFF_REQUIRE(size <= max_bytes, FileError, what, " ", path, " holds ", size,
                " bytes, more than the limit of ", max_bytes, " bytes");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(f.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    IDIFF_REQUIRE(n >= 0, FileError, "cannot read ", what, " ", path, ": ", std::strerror(errno));
    if (n == 0) break;  // shrank while read: what is there
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

void check_output_file(const std::string& path, const std::string& flag) {
  std::error_code ec;
  IDIFF_REQUIRE(!std::filesystem::is_directory(path, ec), FileError, flag, " ", path,
                " is a folder; name the file to write");
  const std::string dir = parent_dir(path);
  IDIFF_REQUIRE(std::filesystem::is_directory(dir, ec), FileError, flag, " ", path, ": the folder ",
                dir, " does not exist");
  IDIFF_REQUIRE(::access(dir.c_str(), W_OK | X_OK) == 0, FileError, flag, " ", path,
                ": cannot write in ", dir, " (", std::strerror(errno), ")");
}

}  // namespace idiff
