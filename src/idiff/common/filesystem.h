// The filesystem in one place, on std::filesystem where it can be: folders made on demand,
// whether a path exists, and reading files a user names or a data folder holds, safely: only
// regular files (a FIFO would block forever, a device such as /dev/zero never ends), and never more
// bytes than a stated limit, so a hostile folder can neither hang a run nor exhaust its memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// Creates `dir` and its missing parents (mkdir -p); a FileError naming `dir` and `what` (e.g.
// "the log directory") when that fails.
void make_directories(const std::string& dir, const std::string& what = "the directory");
// Whether `path` names anything (a broken symlink does not count).
bool path_exists(const std::string& path);
// The folder part of `path`: "a/b.pt" -> "a", "b.pt" -> ".".
std::string parent_dir(const std::string& path);

// Before a long run: `path` (a file the run will write at its end, named by `flag`) can be
// written: it is not a folder, and its folder exists and takes new files. A FileError
// naming the flag and the path otherwise, so the run fails at once, not after its work.
void check_output_file(const std::string& path, const std::string& flag);

// Image files above this size are refused before they are read (README: "Limits").
constexpr uint64_t kMaxImageFileBytes = uint64_t{1} << 30;  // 1 GiB

// The size of `path` (symlinks followed) when it is a regular file; otherwise a FileError
// "<what> <path> is not a regular file (a FIFO, ...)". Never blocks on a FIFO.
uint64_t require_regular_file(const std::string& path, const std::string& what);

// The whole content of the regular file `path`, which must hold at most `max_bytes`
// (else a FileError naming the limit). Opened without blocking, so a FIFO is refused
// rather than waited on.
std::vector<uint8_t> read_regular_file(const std::string& path, uint64_t max_bytes,
                                       const std::string& what);

}  // namespace idiff
