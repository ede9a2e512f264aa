// Where the time goes: LibTorch's (Kineto) profiler around one measured round, summed per
// operator by self time (an operator's time minus that of the operators it called), the
// same figure as the "Self CPU" column of Python's prof.key_averages().table().
#pragma once

#include <functional>
#include <ostream>

namespace idiff::bench {

// Runs `work` under the CPU profiler and prints the `top` operators by self time.
void profile_ops(const std::function<void()>& work, int top, std::ostream& out);

}  // namespace idiff::bench
