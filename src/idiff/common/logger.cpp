#include "idiff/common/logger.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/strings.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>

namespace idiff {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string truncate(const std::string& s) {
  return s.size() > 30 ? s.substr(0, 27) + "..." : s;
}

}  // namespace

Logger::Logger(std::string dir, bool quiet) : dir_(std::move(dir)), quiet_(quiet) {
  if (dir_.empty()) return;
  make_directories(dir_, "the log directory");
  lock_ = DirLock(dir_);
  log_txt_ = std::fopen((dir_ + "/log.txt").c_str(), "a");
  IDIFF_REQUIRE(log_txt_ != nullptr, FileError, dir_, "/log.txt: cannot open for writing (",
                std::strerror(errno), ")");
  // progress.csv is opened at the first dump: a command that logs no values leaves none.
  csv_path_ = dir_ + "/progress.csv";
  csv_pending_ = true;
}

void Logger::continue_progress(int64_t from_step) {
  if (!csv_pending_ || !path_exists(csv_path_)) return;
  const std::vector<uint8_t> bytes =
      read_regular_file(csv_path_, kMaxProgressBytes, "the training log");
  const std::vector<std::string> lines = split(std::string(bytes.begin(), bytes.end()), '\n');
  if (lines.empty() || lines[0].empty()) return;
  csv_keys_ = split(lines[0], ',');
  const auto step_col = std::find(csv_keys_.begin(), csv_keys_.end(), "step") - csv_keys_.begin();
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    // Rows of steps the resumed run repeats are the earlier run's past its checkpoint: dropped.
    const std::vector<std::string> cells = split(lines[i], ',');
    const auto col = static_cast<size_t>(step_col);
    if (col < cells.size() && !cells[col].empty() && std::atoll(cells[col].c_str()) >= from_step)
      continue;
    csv_rows_.push_back(lines[i]);
  }
}

Logger::~Logger() {
  if (log_txt_) std::fclose(log_txt_);
  if (csv_) std::fclose(csv_);
}

std::string Logger::choose_dir(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  if (const char* env = std::getenv("OPENAI_LOGDIR"); env && *env) return env;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d-%H-%M-%S", &tm);
  char full[96];
  std::snprintf(full, sizeof(full), "/tmp/openai-%s-%06lld", buf, static_cast<long long>(micros));
  return full;
}

void Logger::logkv(const std::string& key, double value) {
  values_[key] = value;
  counts_.erase(key);
}

void Logger::logkv_int(const std::string& key, int64_t value) {
  logkv(key, static_cast<double>(value));
  is_int_[key] = true;
}

void Logger::logkv_mean(const std::string& key, double value) {
  const int64_t n = counts_[key];
  const double old = values_.count(key) ? values_[key] : 0.0;
  values_[key] = old * n / (n + 1) + value / (n + 1);
  counts_[key] = n + 1;
}

std::map<std::string, double> Logger::dumpkvs() {
  std::map<std::string, double> out;
  out.swap(values_);
  counts_.clear();
  if (!out.empty()) {
    write_table(out);
    write_csv(out);
  }
  return out;
}

void Logger::write_table(const std::map<std::string, double>& kvs) {
  std::vector<std::pair<std::string, std::string>> rows;
  size_t kw = 0, vw = 0;
  for (const auto& [k, v] : kvs) {
    char buf[64];
    if (is_int_.count(k)) {
      std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
    } else {
      std::snprintf(buf, sizeof(buf), "%-8.3g", v);
    }
    rows.emplace_back(truncate(k), truncate(buf));
    kw = std::max(kw, rows.back().first.size());
    vw = std::max(vw, rows.back().second.size());
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
  std::string text(kw + vw + 7, '-');
  text += "\n";
  for (const auto& [k, v] : rows) {
    text += "| " + k + std::string(kw - k.size(), ' ') + " | " + v +
            std::string(vw - v.size(), ' ') + " |\n";
  }
  text += std::string(kw + vw + 7, '-') + "\n";
  if (!quiet_) std::cout << text << std::flush;
  write_file(log_txt_, text, dir_ + "/log.txt");
}

void Logger::write_file(std::FILE* f, const std::string& text, const std::string& path) {
  if (f == nullptr) return;
  errno = 0;
  const bool ok = std::fputs(text.c_str(), f) >= 0 && std::fflush(f) == 0;
  if (ok) return;
  const int err = errno;
  // Stop writing either file: the error is reported once, by this throw.
  if (log_txt_) std::fclose(log_txt_);
  if (csv_) std::fclose(csv_);
  log_txt_ = csv_ = nullptr;
  csv_pending_ = false;
  throw FileError(str(path, ": cannot write the log (", err ? std::strerror(err) : "write failed",
                      "); stopping"));
}

void Logger::write_csv(const std::map<std::string, double>& kvs) {
  if (!csv_ && !csv_pending_) return;
  std::vector<std::string> extra;
  for (const auto& [k, v] : kvs) {
    if (std::find(csv_keys_.begin(), csv_keys_.end(), k) == csv_keys_.end()) extra.push_back(k);
  }
  std::string row;
  const bool grew = !extra.empty() || csv_pending_;  // the first dump writes the header
  if (grew) {
    csv_keys_.insert(csv_keys_.end(), extra.begin(), extra.end());
    // Earlier rows get empty cells for the new columns, as the reference does.
    for (auto& r : csv_rows_) r += std::string(extra.size(), ',');
  }
  for (size_t i = 0; i < csv_keys_.size(); ++i) {
    if (i) row += ",";
    auto it = kvs.find(csv_keys_[i]);
    if (it != kvs.end()) {
      char buf[64];
      if (is_int_.count(it->first)) {
        std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(it->second));
      } else {
        std::snprintf(buf, sizeof(buf), "%.9g", it->second);
      }
      row += buf;
    }
  }
  csv_rows_.push_back(row);
  std::string text;
  if (grew) {
    // Rewrite the whole file with the longer header.
    csv_ = csv_ ? std::freopen(csv_path_.c_str(), "w", csv_) : std::fopen(csv_path_.c_str(), "w");
    csv_pending_ = false;
    if (csv_ == nullptr) {
      const int err = errno;
      if (log_txt_) std::fclose(log_txt_);
      log_txt_ = nullptr;
      throw FileError(
          str(csv_path_, ": cannot write the log (", std::strerror(err), "); stopping"));
    }
    for (size_t i = 0; i < csv_keys_.size(); ++i) text += (i ? "," : "") + csv_keys_[i];
    text += "\n";
    for (const auto& r : csv_rows_) text += r + "\n";
  } else {
    text = row + "\n";
  }
  write_file(csv_, text, csv_path_);
}

void Logger::log(const std::string& message) {
  if (!quiet_) std::cout << message << std::endl;
  write_file(log_txt_, message + "\n", dir_ + "/log.txt");
}

void Logger::warn(const std::string& message) {
  if (!quiet_) std::cerr << "WARNING: " << message << std::endl;
  write_file(log_txt_, "WARNING: " + message + "\n", dir_ + "/log.txt");
}

}  // namespace idiff
