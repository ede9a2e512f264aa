// A progress reporter for long loops (sampling steps, nll batches, embedded images): on a
// terminal a bar redrawn in place with the rate and the time left; otherwise (a pipe, a
// log file) one line every 10 seconds with the same numbers, so a long run is never silent
// and a short one writes nothing extra.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace idiff {

class ProgressBar {
 public:
  // `label` precedes the counter; `total` is the number of ticks expected. `enabled`
  // false: nothing is written (ranks other than 0). `line_interval`: seconds between the
  // lines written when stderr is not a terminal.
  ProgressBar(std::string label, int64_t total, bool enabled = true, double line_interval = 10.0);
  ~ProgressBar();
  void set_label(std::string label) { label_ = std::move(label); }
  void update(int64_t done);  // redraws at most ~10 times a second (a line every 10 s)
  void finish();              // ends the line

  // Whether stderr is a terminal.
  static bool stderr_is_terminal();

  // "1h02m", "4m35s", "12s": a duration for people.
  static std::string format_duration(double seconds);

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, terminal_;
  double line_interval_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace idiff
