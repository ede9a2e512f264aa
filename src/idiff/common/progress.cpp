#include "idiff/common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace idiff {
namespace {

constexpr double kTerminalInterval = 0.1;  // seconds between redraws

}  // namespace

bool ProgressBar::stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

std::string ProgressBar::format_duration(double seconds) {
  const long long s = std::llround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%llds", s);
  }
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled, double line_interval)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      terminal_(stderr_is_terminal()),
      line_interval_(line_interval),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t done) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (terminal_ ? drawn_ && done < total_ && since_draw < kTerminalInterval
                : since_draw < line_interval_) {
    return;
  }
  last_draw_ = now;
  drawn_ = true;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? done / secs : 0.0;
  const std::string left =
      rate > 0 && done < total_ ? ", " + format_duration((total_ - done) / rate) + " left" : "";
  if (!terminal_) {
    std::fprintf(stderr, "%s: %lld/%lld (%.0f%%), %.1f it/s%s\n", label_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_),
                 total_ > 0 ? 100.0 * done / total_ : 0.0, rate, left.c_str());
    std::fflush(stderr);
    return;
  }
  const int width = 30;
  const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %.1f it/s%s  ", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), rate, left.c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (enabled_ && terminal_ && drawn_) {
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace idiff
