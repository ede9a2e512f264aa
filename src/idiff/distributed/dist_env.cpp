// Reading the launcher's environment variables (see dist_env.h).
#include "idiff/distributed/dist_env.h"

#include "idiff/common/error.h"

#include <cstdlib>

namespace idiff {

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

namespace {

int64_t parse_int(const std::string& name, const std::string& text) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  IDIFF_REQUIRE(used > 0 && used == text.size(), ConfigError, "environment variable ", name, "='",
                text, "' is not an integer");
  return v;
}

std::optional<int64_t> get_int(const EnvLookup& env, const std::string& name) {
  const auto v = env(name);
  if (!v) return std::nullopt;
  return parse_int(name, *v);
}

// Reads the three numbers of one launcher's naming (rank, size, local rank).
void read_ranks(const EnvLookup& env, const std::string& rank_var, const std::string& size_var,
                const std::string& local_var, DistEnv& out) {
  const auto rank = get_int(env, rank_var);
  const auto size = get_int(env, size_var);
  IDIFF_REQUIRE(rank.has_value(), ConfigError, "environment variable ", size_var, " is set but ",
                rank_var, " is not (a launcher sets both)");
  IDIFF_REQUIRE(size.has_value(), ConfigError, "environment variable ", rank_var, " is set but ",
                size_var, " is not (a launcher sets both)");
  IDIFF_REQUIRE(*size >= 1, ConfigError, "environment variable ", size_var, "=", *size,
                ": expected a number of processes >= 1");
  IDIFF_REQUIRE(*rank >= 0 && *rank < *size, ConfigError, "environment variable ", rank_var, "=",
                *rank, ": expected 0 <= rank < ", size_var, "=", *size);
  out.rank = *rank;
  out.world_size = *size;
  // Without a local rank (a hand-written launch on one machine) the global rank is it.
  out.local_rank = get_int(env, local_var).value_or(*rank);
  IDIFF_REQUIRE(out.local_rank >= 0, ConfigError, "environment variable ", local_var, "=",
                out.local_rank, ": expected >= 0");
}

}  // namespace

DistEnv read_dist_env(const EnvLookup& env) {
  DistEnv out;
  if (env("RANK") || env("WORLD_SIZE")) {
    out.launcher = "torchrun";
    read_ranks(env, "RANK", "WORLD_SIZE", "LOCAL_RANK", out);
  } else if (env("OMPI_COMM_WORLD_RANK") || env("OMPI_COMM_WORLD_SIZE")) {
    out.launcher = "mpirun";
    read_ranks(env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
               out);
  } else {
    return out;
  }

  if (const auto file = env("IDIFF_DIST_FILE")) {
    IDIFF_REQUIRE(!file->empty(), ConfigError, "environment variable IDIFF_DIST_FILE is empty");
    out.file_path = *file;
    return out;
  }
  const auto addr = env("MASTER_ADDR");
  const auto port = env("MASTER_PORT");
  if (addr && port) {
    IDIFF_REQUIRE(!addr->empty(), ConfigError, "environment variable MASTER_ADDR is empty");
    out.master_addr = *addr;
    out.master_port = parse_int("MASTER_PORT", *port);
    const auto agent = env("TORCHELASTIC_USE_AGENT_STORE");
    out.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
    if (out.agent_store) out.restart_count = get_int(env, "TORCHELASTIC_RESTART_COUNT").value_or(0);
    IDIFF_REQUIRE(out.master_port >= 1 && out.master_port <= 65535, ConfigError,
                  "environment variable MASTER_PORT=", out.master_port,
                  ": expected a TCP port in 1..65535");
    return out;
  }
  IDIFF_REQUIRE(!addr || port, ConfigError,
                "environment variable MASTER_ADDR is set but MASTER_PORT is not");
  IDIFF_REQUIRE(!port || addr, ConfigError,
                "environment variable MASTER_PORT is set but MASTER_ADDR is not");
  // One process needs no rendezvous: it gets an in-process store.
  IDIFF_REQUIRE(out.world_size == 1, ConfigError, out.launcher, " started ", out.world_size,
                " processes but neither MASTER_ADDR and MASTER_PORT (the rendezvous host and "
                "port of rank 0) nor IDIFF_DIST_FILE (a file on a shared file system) is set",
                out.launcher == "mpirun"
                    ? "; pass them with mpirun -x MASTER_ADDR=... -x MASTER_PORT=..."
                    : "");
  return out;
}

std::string DistEnv::describe() const {
  if (!launched()) return "single process";
  std::string where = "in-process store";
  if (!file_path.empty())
    where = "file://" + file_path;
  else if (!master_addr.empty())
    where = str("tcp://", master_addr, ":", master_port);
  return str("rank ", rank, " of ", world_size, " (local rank ", local_rank, ", ", launcher,
             ", rendezvous ", where, ")");
}

}  // namespace idiff
