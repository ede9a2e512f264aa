// The NCCL backend of distributed/ (CUDA tensors), compiled only when the LibTorch found is a
// CUDA build and nccl.h was found (IDIFF_WITH_NCCL, set by CMake from the nvidia-nccl
// package the torch wheel depends on, or a system NCCL). USE_C10D_NCCL exposes
// ProcessGroupNCCL; LibTorch's CMake config defines it for CUDA builds.
//
// Timeouts: NCCL collectives run asynchronously on their own stream; c10d's watchdog
// thread ends the process with its own message when one exceeds --dist_timeout (a dead
// or stalled peer), so a GPU rank never hangs either.
#include "idiff/distributed/process_group.h"

#if defined(IDIFF_WITH_CUDA) && defined(IDIFF_WITH_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace idiff::dist_detail {

bool nccl_compiled_in() {
#if defined(IDIFF_WITH_CUDA) && defined(IDIFF_WITH_NCCL)
  return true;
#else
  return false;
#endif
}

c10::intrusive_ptr<c10d::Backend> create_nccl_backend(const DistEnv& env,
                                                      const c10::intrusive_ptr<c10d::Store>& store,
                                                      const c10::Device& device,
                                                      std::chrono::milliseconds timeout) {
#if defined(IDIFF_WITH_CUDA) && defined(IDIFF_WITH_NCCL)
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
      store, static_cast<int>(env.rank), static_cast<int>(env.world_size), opts);
  // Create the communicator now, so that a rank that cannot connect fails here, in the
  // set-up, rather than in the first gradient average.
  const c10::Device bound(c10::kCUDA, device.has_index() ? device.index() : 0);
  backend->setBoundDeviceId(bound);
  backend->eagerConnectSingleDevice(bound);
  return backend;
#else
  (void)env, (void)store, (void)device, (void)timeout;
  return {};
#endif
}

}  // namespace idiff::dist_detail
