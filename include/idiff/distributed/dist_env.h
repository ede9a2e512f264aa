// Where a process stands in a multi-process run, read from the environment variables its
// launcher set: torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or
// OpenMPI's mpirun (OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK, with MASTER_ADDR and
// MASTER_PORT passed through, or IDIFF_DIST_FILE naming a shared file for rendezvous).
// The reference learns the same from MPI (improved_diffusion/dist_util.py: setup_dist).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace idiff {

// Looks up one environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process's real environment (getenv).
EnvLookup process_env();

struct DistEnv {
  // "none" (no launcher variables: one process), "torchrun" or "mpirun".
  std::string launcher = "none";
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  // Rendezvous: a TCP store at master_addr:master_port served by rank 0, or a FileStore
  // on file_path when that is set (it wins over MASTER_ADDR/PORT). Both are empty for
  // a single process without them (an in-process store is used then).
  std::string master_addr;
  int64_t master_port = 0;
  std::string file_path;
  // torchrun (torch.distributed.run) serves the TCP store itself and says so with
  // TORCHELASTIC_USE_AGENT_STORE; rank 0 then connects to it like the others, with keys
  // under the restart attempt's prefix (TORCHELASTIC_RESTART_COUNT), as PyTorch does.
  bool agent_store = false;
  int64_t restart_count = 0;

  // True when launcher variables were set (even WORLD_SIZE=1): such a run sets up a real
  // process group, so one GPU goes through the same code as many.
  bool launched() const { return launcher != "none"; }
  // "rank 1 of 4 (local rank 1, torchrun, rendezvous tcp://host:29500)".
  std::string describe() const;
};

// Reads and validates the variables. Half-set or malformed variables (RANK without
// WORLD_SIZE, a non-integer, rank outside [0, world_size), a port outside 1..65535, a
// multi-process run without MASTER_ADDR/MASTER_PORT or IDIFF_DIST_FILE) are a ConfigError
// naming the variable. torchrun's variables win over mpirun's when both are present.
DistEnv read_dist_env(const EnvLookup& env = process_env());

}  // namespace idiff
