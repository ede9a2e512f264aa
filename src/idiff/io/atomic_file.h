// Writing files so that they are never seen half-written: the content goes to a fresh
// temporary file in the same directory, which is flushed to disk (fsync) and then renamed
// over the destination (atomic on POSIX file systems), and the directory is synced. A
// failure or an exception leaves the old file (if any) untouched and removes the
// temporary one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace idiff {

// Calls write(tmp_path) to fill the temporary file, then moves it to `path`.
void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& tmp_path)>& write);

// Sequential writes to a file opened for writing (truncated), with errors as FileError.
class FileWriter {
 public:
  explicit FileWriter(const std::string& path);
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  ~FileWriter();
  void write(const void* data, size_t size);
  void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
  void close();

 private:
  std::string path_;
  int fd_ = -1;
};

// write_file_atomically for content already in memory.
void write_bytes_atomically(const std::string& path, const std::string& bytes);

// Removes the temporary files that write_file_atomically leaves when its process is killed
// (".<name>.tmp.<pid>.<n>.<r>" next to <name>), for the names in `dir` that start with one
// of `prefixes`; returns how many. Call it only while no other process writes those names
// (e.g. holding the folder's lock).
int64_t remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& prefixes);

// Moves the files a run wrote into the folder `staging` into `dir` once they are all
// written, so a run killed half-way leaves them under the staging name and never a partial
// set in `dir`: a rename of the whole folder when `dir` does not exist yet, else a rename of
// each file into it (same names replaced); `staging` is removed. Both on one file system.
void publish_folder(const std::string& staging, const std::string& dir);

}  // namespace idiff
