#include "idiff/io/atomic_file.h"

#include "idiff/common/error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace idiff {
namespace {

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  IDIFF_REQUIRE(fd >= 0, FileError, path, ": cannot open to sync (", std::strerror(errno), ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot sync directories (EINVAL); the rename is done regardless.
  IDIFF_REQUIRE(rc == 0 || (directory && err == EINVAL), FileError, path, ": fsync failed (",
                std::strerror(err), ")");
}

// Creates an empty file with a unique name next to `path` (mode 0666 less the umask, as
// any new file), returning its name.
std::string create_temporary(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string tmp = parent_dir(path) + "/." + base_name(path) + ".tmp." +
                            std::to_string(::getpid()) + "." + std::to_string(counter++) + "." +
                            std::to_string(rd() % 1000000);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      return tmp;
    }
    IDIFF_REQUIRE(errno == EEXIST, FileError, path, ": cannot create a temporary file in ",
                  parent_dir(path), " (", std::strerror(errno), ")");
  }
  throw FileError(str(path, ": cannot find a free temporary file name"));
}

}  // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& tmp_path)>& write) {
  IDIFF_REQUIRE(!path.empty() && path.back() != '/', FileError, "'", path,
                "' is not a file name to write");
  const std::string tmp = create_temporary(path);
  try {
    write(tmp);
    fsync_path(tmp, false);
    IDIFF_REQUIRE(::rename(tmp.c_str(), path.c_str()) == 0, FileError, path,
                  ": cannot move the finished file into place (", std::strerror(errno), ")");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(parent_dir(path), true);
}

FileWriter::FileWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  IDIFF_REQUIRE(fd_ >= 0, FileError, path, ": cannot open for writing (", std::strerror(errno),
                ")");
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    IDIFF_REQUIRE(n > 0, FileError, path_, ": write failed (", std::strerror(errno), ")");
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void FileWriter::close() {
  const int fd = fd_;
  fd_ = -1;
  IDIFF_REQUIRE(::close(fd) == 0, FileError, path_, ": close failed (", std::strerror(errno), ")");
}

void write_bytes_atomically(const std::string& path, const std::string& bytes) {
  write_file_atomically(path, [&](const std::string& tmp) {
    FileWriter f(tmp);
    f.write(bytes);
    f.close();
  });
}

int64_t remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& prefixes) {
  std::error_code ec;
  int64_t removed = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < 2 || name[0] != '.' || name.find(".tmp.") == std::string::npos) continue;
    if (!it->is_regular_file(ec)) continue;
    for (const std::string& prefix : prefixes) {
      if (name.compare(1, prefix.size(), prefix) == 0) {
        if (std::filesystem::remove(it->path(), ec)) ++removed;
        break;
      }
    }
  }
  return removed;
}

void publish_folder(const std::string& staging, const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) {
    fs::rename(staging, dir, ec);
    IDIFF_REQUIRE(!ec, FileError, staging, ": cannot rename to ", dir, " (", ec.message(), ")");
  } else {
    IDIFF_REQUIRE(fs::is_directory(dir, ec), FileError, dir, " exists and is not a folder");
    for (fs::directory_iterator it(staging, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path to = fs::path(dir) / it->path().filename();
      std::error_code move_ec;
      fs::rename(it->path(), to, move_ec);
      IDIFF_REQUIRE(!move_ec, FileError, it->path().string(), ": cannot move to ", to.string(),
                    " (", move_ec.message(), ")");
    }
    IDIFF_REQUIRE(!ec, FileError, staging, ": cannot list (", ec.message(), ")");
    fs::remove(staging, ec);
  }
  fsync_path(parent_dir(dir), true);
}

}  // namespace idiff
