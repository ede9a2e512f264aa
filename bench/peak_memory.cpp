#include "peak_memory.h"

#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>
#include <fstream>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifdef IDIFF_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace idiff::bench {

int64_t current_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

PeakMemory::PeakMemory(const c10::Device& device) : device_(device) {
  if (device_.is_cuda()) {
#ifdef IDIFF_WITH_CUDA
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index() < 0 ? 0 : device_.index());
#endif
    return;
  }
#ifdef __GLIBC__
  malloc_trim(0);  // hand free heap pages back first, so the growth is this region's need
#endif
  // Linux: "5" resets the resident-set high-water mark (VmHWM, getrusage's ru_maxrss).
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
  rss_at_start_ = current_rss_bytes();
}

int64_t PeakMemory::peak_bytes() const {
  if (device_.is_cuda()) {
#ifdef IDIFF_WITH_CUDA
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index() < 0 ? 0 : device_.index());
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .peak;
#else
    return -1;
#endif
  }
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024 - rss_at_start_;
}

}  // namespace idiff::bench
