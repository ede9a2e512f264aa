// Where the time goes: LibTorch's (Kineto) profiler around one measured round, summed per
// operator by self time (an operator's time minus that of the operators it called), the
// same figure as the "Self CPU" column of Python's prof.key_averages().table(); on CUDA
// also the kernels, as its "Self CUDA" column.
#pragma once

#include <functional>
#include <ostream>

namespace idiff::bench {

// Runs `work` under the profiler and prints the `top` operators by self time. With `cuda`
// it also records the GPU's activity and prints the `top` kernels (and copies) by time on
// the device, with the share of the wall time the device was busy: a low share means the
// step waits on the host (launches, synchronisation), not on the kernels.
void profile_ops(const std::function<void()>& work, int top, std::ostream& out, bool cuda = false);

}  // namespace idiff::bench
