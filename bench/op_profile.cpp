#include "op_profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace idiff::bench {

void profile_ops(const std::function<void()>& work, int top, std::ostream& out) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  const ProfilerConfig config(ProfilerState::KINETO);
  const std::set<ActivityType> activities = {ActivityType::CPU};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  work();
  const auto result = prof::disableProfiler();

  struct Span {
    uint64_t start, end;
    std::string name;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CPU || e.isAsync()) continue;
    by_thread[e.startThreadId()].push_back({e.startNs(), e.endNs(), e.name()});
  }
  struct Total {
    double self_ns = 0;
    int64_t calls = 0;
  };
  std::map<std::string, Total> totals;
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
        t.self_ns += d - children;
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
  std::vector<std::pair<std::string, Total>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.self_ns > b.second.self_ns; });
  char line[256];
  std::snprintf(line, sizeof(line), "%-40s %10s %7s %8s\n", "operator (self time)", "ms", "%",
                "calls");
  out << line;
  for (int i = 0; i < top && i < static_cast<int>(rows.size()); ++i) {
    const auto& [name, t] = rows[static_cast<size_t>(i)];
    std::snprintf(line, sizeof(line), "%-40s %10.1f %6.1f%% %8lld\n", name.substr(0, 40).c_str(),
                  t.self_ns / 1e6, 100.0 * t.self_ns / all_ns, static_cast<long long>(t.calls));
    out << line;
  }
  std::snprintf(line, sizeof(line), "%-40s %10.1f\n", "total (top-level operators)", all_ns / 1e6);
  out << line;
}

}  // namespace idiff::bench
