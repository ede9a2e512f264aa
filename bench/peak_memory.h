// Peak memory of one measured region: on the CPU the growth of the resident set (free heap
// pages handed back with malloc_trim first; then the high-water mark getrusage reports,
// reset through /proc/self/clear_refs where Linux allows it, minus the resident set at the
// start); on CUDA the peak of bytes allocated by
// LibTorch's caching allocator (what torch.cuda.max_memory_allocated reports in Python).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace idiff::bench {

class PeakMemory {
 public:
  // Starts a region: resets the peak counters of `device`.
  explicit PeakMemory(const c10::Device& device);
  // Bytes: CPU, peak resident set minus the resident set at the start; CUDA, peak allocated.
  int64_t peak_bytes() const;

 private:
  c10::Device device_;
  int64_t rss_at_start_ = 0;
};

// The resident set of this process now, in bytes.
int64_t current_rss_bytes();

}  // namespace idiff::bench
