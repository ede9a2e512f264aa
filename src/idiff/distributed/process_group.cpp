// Rendezvous stores and backend choice for distributed/ (see process_group.h). The stores are
// c10d's: TCPStore (rank 0 serves it at MASTER_ADDR:MASTER_PORT, as torchrun's
// env:// rendezvous), FileStore (a shared file, for mpirun without a known host), and
// HashStore (in-process, for WORLD_SIZE=1). Under torchrun the launcher's own TCPStore
// is used, as torch.distributed does.
#include "idiff/distributed/process_group.h"

#include "idiff/common/error.h"

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace idiff::dist_detail {

std::string short_message(const std::exception& e) {
  std::string msg;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e))
    msg = ce->what_without_backtrace();
  else
    msg = e.what();
  const auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  // c10 appends where it was raised; the user needs what happened.
  const auto raised = msg.find(" (Exception raised from");
  if (raised != std::string::npos) msg.resize(raised);
  return msg;
}

namespace {

c10::intrusive_ptr<c10d::Store> create_store(const DistEnv& env,
                                             std::chrono::milliseconds timeout) {
  if (!env.file_path.empty()) {
    auto store =
        c10::make_intrusive<c10d::FileStore>(env.file_path, static_cast<int>(env.world_size));
    store->setTimeout(timeout);
    return store;
  }
  if (!env.master_addr.empty()) {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(env.master_port);
    opts.isServer = env.rank == 0 && !env.agent_store;
    opts.numWorkers = static_cast<std::size_t>(env.world_size);
    opts.waitWorkers = true;  // rank 0 returns once every rank has connected (or times out)
    opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
    if (!env.agent_store) return store;
    return c10::make_intrusive<c10d::PrefixStore>(str("/worker/attempt_", env.restart_count),
                                                  store);
  }
  TORCH_CHECK(env.world_size == 1, "a multi-process DistEnv without a rendezvous");
  auto store = c10::make_intrusive<c10d::HashStore>();
  store->setTimeout(timeout);
  return store;
}

std::string where(const DistEnv& env) {
  if (!env.file_path.empty()) return str("through the file IDIFF_DIST_FILE=", env.file_path);
  if (!env.master_addr.empty()) {
    return str("at MASTER_ADDR=", env.master_addr, " MASTER_PORT=", env.master_port,
               env.rank == 0 && !env.agent_store ? " (served by this rank)" : "");
  }
  return "in this process";
}

}  // namespace

ProcessGroup create_process_group(const DistEnv& env, const c10::Device& device,
                                  std::chrono::milliseconds timeout) {
  const double seconds = static_cast<double>(timeout.count()) / 1000.0;
  ProcessGroup pg;
  try {
    pg.store = create_store(env, timeout);
  } catch (const std::exception& e) {
    throw Error(str(
        "distributed rendezvous ", where(env), " failed for rank ", env.rank, " of ",
        env.world_size, " within `dist_timeout` ", seconds,
        " s (did every rank start, with the same MASTER_ADDR/MASTER_PORT?): ", short_message(e)));
  }
  try {
    if (device.is_cuda()) {
      pg.backend = create_nccl_backend(env, pg.store, device, timeout);
      pg.backend_name = "nccl";
    }
    if (!pg.backend) {
      pg.backend = create_gloo_backend(env, pg.store, timeout);
      pg.backend_name = "gloo";
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(str("distributed set-up of rank ", env.rank, " of ", env.world_size, " ",
                    where(env), " failed within `dist_timeout` ", seconds,
                    " s (a rank exited or could not be reached): ", short_message(e)));
  }
  IDIFF_REQUIRE(pg.backend || env.world_size == 1, ConfigError,
                "this idiff was built without Gloo, which runs multi-process work on CPUs (the "
                "headers of Debian's libgloo-dev were missing at build time): install it and "
                "rebuild, or run on GPUs");
  return pg;
}

}  // namespace idiff::dist_detail
