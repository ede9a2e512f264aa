// The Gloo backend of distributed/ (CPU tensors; CUDA tensors too, through host copies).
//
// The torch wheel ships c10d's ProcessGroupGloo.hpp but not the Gloo headers it includes;
// Debian's libgloo-dev provides them. Only the declarations are needed: Gloo itself is
// the copy linked into libtorch, and this file uses nothing of Gloo but the opaque
// device handle, so the two Gloo versions never meet in one object layout.
// USE_C10D_GLOO exposes the class; LibTorch's CMake config defines it for builds with
// Gloo (all Linux builds), the fallback covers a hand-made build line. Without the
// headers (IDIFF_WITH_GLOO unset by CMake) there is no Gloo backend (see process_group.h).
#include "idiff/distributed/process_group.h"

#include "idiff/common/error.h"

#ifdef IDIFF_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

namespace idiff::dist_detail {

bool gloo_compiled_in() {
#ifdef IDIFF_WITH_GLOO
  return true;
#else
  return false;
#endif
}

#ifdef IDIFF_WITH_GLOO

namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The network interface Gloo binds, as PyTorch chooses it: GLOO_SOCKET_IFNAME when set;
// loopback when every rank is on this machine (a loopback MASTER_ADDR, or one process);
// else the address this machine's host name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const DistEnv& env) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (env.world_size == 1 || is_loopback(env.master_addr)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

c10::intrusive_ptr<c10d::Backend> create_gloo_backend(const DistEnv& env,
                                                      const c10::intrusive_ptr<c10d::Store>& store,
                                                      std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices.push_back(gloo_device(env));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, static_cast<int>(env.rank),
                                                     static_cast<int>(env.world_size), opts);
}

#else

c10::intrusive_ptr<c10d::Backend> create_gloo_backend(const DistEnv& env,
                                                      const c10::intrusive_ptr<c10d::Store>& store,
                                                      std::chrono::milliseconds timeout) {
  (void)env, (void)store, (void)timeout;
  return {};
}

#endif

}  // namespace idiff::dist_detail
