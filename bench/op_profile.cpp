#include "op_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace idiff::bench {
namespace {

struct Total {
  double ns = 0;
  int64_t calls = 0;
};

// The `top` rows of `totals` by time, as a table with shares of `all_ns`.
void print_top(const std::map<std::string, Total>& totals, double all_ns, int top,
               const char* heading, std::ostream& out) {
  std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  char line[256];
  std::snprintf(line, sizeof(line), "%-60s %10s %7s %8s\n", heading, "ms", "%", "calls");
  out << line;
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    const auto& [name, t] = rows[static_cast<size_t>(i)];
    std::snprintf(line, sizeof(line), "%-60s %10.1f %6.1f%% %8lld\n", name.substr(0, 60).c_str(),
                  t.ns / 1e6, 100.0 * t.ns / all_ns, static_cast<long long>(t.calls));
    out << line;
  }
}

}  // namespace

void profile_ops(const std::function<void()>& work, int top, std::ostream& out, bool cuda) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  const ProfilerConfig config(ProfilerState::KINETO);
  std::set<ActivityType> activities = {ActivityType::CPU};
  if (cuda) activities.insert(ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  const auto start = std::chrono::steady_clock::now();
  prof::enableProfiler(config, activities);
  work();
  const auto result = prof::disableProfiler();
  const double wall_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();

  struct Span {
    uint64_t start, end;
    std::string name;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  std::map<std::string, Total> device;  // the GPU's activity: kernels, copies, memsets
  double device_ns = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CUDA) {
      Total& k = device[e.name()];
      k.ns += static_cast<double>(e.durationNs());
      ++k.calls;
      device_ns += static_cast<double>(e.durationNs());
    } else if (e.deviceType() == c10::DeviceType::CPU && !e.isAsync()) {
      by_thread[e.startThreadId()].push_back({e.startNs(), e.endNs(), e.name()});
    }
  }
  std::map<std::string, Total> totals;  // self time per operator on the host
  double all_ns = 0;
  for (auto& [tid, spans] : by_thread) {
    // Parents start first (and, at equal starts, end last): a stack of open spans gives
    // each span's children.
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    std::vector<std::pair<const Span*, double>> stack;  // span, time of its children
    auto close = [&](uint64_t until) {
      while (!stack.empty() && stack.back().first->end <= until) {
        const auto [span, children] = stack.back();
        stack.pop_back();
        const double d = static_cast<double>(span->end - span->start);
        Total& t = totals[span->name];
        t.ns += d - children;
        ++t.calls;
        if (stack.empty()) {
          all_ns += d;
        } else {
          stack.back().second += d;
        }
      }
    };
    for (const Span& s : spans) {
      close(s.start);
      stack.emplace_back(&s, 0.0);
    }
    close(UINT64_MAX);
  }
  print_top(totals, all_ns, top, "operator (self time on the host)", out);
  char line[256];
  std::snprintf(line, sizeof(line), "%-60s %10.1f\n", "total (top-level operators)", all_ns / 1e6);
  out << line;
  if (!cuda) return;
  if (device.empty()) {
    out << "no device activity was recorded (is CUPTI available?)\n";
    return;
  }
  print_top(device, device_ns, top, "kernel or copy (time on the device)", out);
  std::snprintf(line, sizeof(line), "device busy %.1f ms of %.1f ms wall (%.0f%%)\n",
                device_ns / 1e6, wall_ns / 1e6, 100.0 * device_ns / wall_ns);
  out << line;
}

}  // namespace idiff::bench
