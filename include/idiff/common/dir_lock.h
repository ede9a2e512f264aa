// One run per log folder: an advisory lock (flock) on <dir>/.idiff.lock, held while the
// run lives. Two runs sharing a --log_dir would overwrite each other's checkpoints and
// interleave progress.csv; the second is refused with the first's process id, host and
// start time (written into the lock file). The kernel drops the lock when the process
// ends, however it ends, so a crashed run leaves nothing that blocks the next one.
#pragma once

#include <string>

namespace idiff {

class DirLock {
 public:
  DirLock() = default;
  // Locks `dir` (which must exist) or throws a FileError saying who holds it.
  explicit DirLock(const std::string& dir);
  ~DirLock();
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace idiff
