// Process-wide settings that make training and sampling faster without changing results,
// for programs to apply once for the device they run on (idiff_bench does; see README,
// Performance, for what each is worth).
//
//   CPU   glibc's malloc keeps freed memory for reuse. By default it hands blocks of more
//         than a few MiB back to the kernel on every free (mmap threshold, heap trimming),
//         so each training or sampling step page-faults and zeroes its activations and
//         attention matrices afresh. Written here because no allocator package is a
//         dependency; preloading jemalloc or tcmalloc does the same job.
//   CUDA  cuDNN autotuning (benchmark mode): training and sampling repeat static shapes,
//         so the search for the fastest convolution algorithm pays once per shape.
#pragma once

#include <c10/core/Device.h>

namespace idiff {

void tune_for_device(const c10::Device& device);

}  // namespace idiff
