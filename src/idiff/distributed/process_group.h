// Internal to distributed/: creating LibTorch's c10d rendezvous store and collective backend
// (Gloo for CPU tensors, NCCL for CUDA tensors) for one process of a multi-process run.
// Only dist_context.cpp, grad_reducer.cpp and process_group*.cpp include this (the c10d
// headers are heavy).
#pragma once

#include "idiff/distributed/dist_env.h"

#include <c10/core/Device.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>

namespace idiff::dist_detail {

struct ProcessGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::string backend_name;  // "gloo" or "nccl"
};

// Rendezvous through env's store (TCP at MASTER_ADDR:MASTER_PORT served by rank 0, a
// FileStore on IDIFF_DIST_FILE, or an in-process store for a single process), then the
// backend: NCCL when `device` is CUDA and this build has it, Gloo otherwise. Failing to
// meet every rank within `timeout` is an idiff::Error saying where and how long. A build
// without Gloo gives a null backend for a CPU group of one (the caller then runs alone)
// and a ConfigError for more.
ProcessGroup create_process_group(const DistEnv& env, const c10::Device& device,
                                  std::chrono::milliseconds timeout);

// The backends, in their own translation units (process_group_gloo.cpp,
// process_group_nccl.cpp) because they need extra headers and definitions.
// Null when this build has no Gloo (its headers were missing at build time).
c10::intrusive_ptr<c10d::Backend> create_gloo_backend(const DistEnv& env,
                                                      const c10::intrusive_ptr<c10d::Store>& store,
                                                      std::chrono::milliseconds timeout);
// Null when this build has no NCCL (a CPU-only LibTorch, or nccl.h was not found).
c10::intrusive_ptr<c10d::Backend> create_nccl_backend(const DistEnv& env,
                                                      const c10::intrusive_ptr<c10d::Store>& store,
                                                      const c10::Device& device,
                                                      std::chrono::milliseconds timeout);

bool gloo_compiled_in();
bool nccl_compiled_in();

// The message of a c10d / Gloo / NCCL exception without C++ backtraces: its first line.
std::string short_message(const std::exception& e);

}  // namespace idiff::dist_detail
