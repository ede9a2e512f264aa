// Training logs in the reference's formats (improved_diffusion/logger.py): key/value pairs
// accumulated between dumps (logkv sets, logkv_mean averages), written at each dump as a
// table to the terminal and log.txt and as a row of progress.csv (whose header grows
// when new keys appear). Messages go to the terminal and log.txt.
//
// The folder is locked for the logger's life (dir_lock.h): a second run given the same
// folder is refused. A failed write to log.txt or progress.csv (a full disk) is a
// FileError naming the file, thrown once; the files are not written after it.
#pragma once

#include "idiff/common/dir_lock.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace idiff {

class Logger {
 public:
  // Locks `dir` (created if missing), then opens log.txt in it (progress.csv at the first dump).
  // With an empty `dir` nothing is written to files (terminal only). `quiet` silences the terminal
  // (other ranks than 0).
  explicit Logger(std::string dir = "", bool quiet = false);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // The directory: --log_dir, else $OPENAI_LOGDIR, else /tmp/openai-YYYY-MM-DD-HH-MM-SS-ffffff.
  static std::string choose_dir(const std::string& flag_value);

  void logkv(const std::string& key, double value);
  void logkv_int(const std::string& key, int64_t value);
  void logkv_mean(const std::string& key, double value);
  // Writes the accumulated values and clears them. Returns them (for tests/progress).
  std::map<std::string, double> dumpkvs();

  // A resumed run: keeps progress.csv's rows of the steps before `from_step` (a run with
  // another folder has none) and appends after them, instead of starting the file anew.
  void continue_progress(int64_t from_step);
  void log(const std::string& message);   // terminal + log.txt
  void warn(const std::string& message);  // "WARNING: ..." to stderr + log.txt

  const std::string& dir() const { return dir_; }

 private:
  void write_table(const std::map<std::string, double>& kvs);
  void write_csv(const std::map<std::string, double>& kvs);
  // Writes `text` to `f` and flushes; a failure closes both files and throws (once).
  void write_file(std::FILE* f, const std::string& text, const std::string& path);

  std::string dir_;
  bool quiet_;
  DirLock lock_;
  std::FILE* log_txt_ = nullptr;
  std::FILE* csv_ = nullptr;
  bool csv_pending_ = false;  // progress.csv not opened yet (it is at the first dump)
  static constexpr uint64_t kMaxProgressBytes = uint64_t{1} << 30;
  std::string csv_path_;
  std::vector<std::string> csv_keys_;
  std::vector<std::string> csv_rows_;  // rows written so far (rewritten when keys grow)
  std::map<std::string, double> values_;
  std::map<std::string, int64_t> counts_;  // logkv_mean sample counts
  std::map<std::string, bool> is_int_;
};

}  // namespace idiff
