// A one-line progress indicator for long loops (sampling steps, batches): redrawn in
// place on a terminal, silent otherwise (logs stay clean when output is redirected).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace idiff {

class ProgressBar {
 public:
  // `label` precedes the counter; `total` is the number of ticks expected.
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();
  void set_label(std::string label) { label_ = std::move(label); }
  void update(int64_t done);  // redraws at most ~10 times a second
  void finish();              // ends the line

  // Whether stderr is a terminal (the default for `enabled`).
  static bool stderr_is_terminal();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace idiff
