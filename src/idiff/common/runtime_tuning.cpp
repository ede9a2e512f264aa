#include "idiff/common/runtime_tuning.h"

#include <ATen/Context.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace idiff {

void tune_for_device(const c10::Device& device) {
  if (device.is_cuda()) {
    at::globalContext().setBenchmarkCuDNN(true);
    return;
  }
#ifdef __GLIBC__
  // Serve every block from the heap (no per-allocation mmap/munmap) and never trim it:
  // the process keeps its peak footprint, which the next step needs again anyway.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace idiff
