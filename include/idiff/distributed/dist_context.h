// One process's place in a data-parallel run and the collectives training needs, on
// LibTorch's c10d (Gloo for CPU tensors, NCCL for CUDA tensors). It plays the part of
// the reference's dist_util.py (setup_dist, dev, sync_params) and of the gradient
// averaging that PyTorch's DistributedDataParallel does for train_util.py.
//
// A process started without launcher variables gets a single-process context whose
// collectives cost nothing. Launched by torchrun or mpirun (even with WORLD_SIZE=1) it
// joins a real process group. Every collective and the rendezvous honour the timeout
// (--dist_timeout): a peer that exits, stalls or never starts makes the call throw an
// idiff::Error that says so, instead of hanging. After such an error the context is
// unusable; the process should exit.
//
// Process-wide state: a context on a CUDA device makes that device current (so NCCL and
// library handles do not all land on GPU 0) and makes the one that was current before
// current again when it is destroyed. c10's logging (TORCH_CPP_LOG_LEVEL, which c10d's
// retry messages honour) is the program's to set up: the idiff program calls
// c10::initLogging() at start.
#pragma once

#include "idiff/config.h"
#include "idiff/distributed/dist_env.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace idiff {

namespace dist_detail {
struct ProcessGroup;
}
class GradReducer;

class DistContext {
 public:
  // DistributedDataParallel's default bucket size.
  static constexpr int64_t kDefaultBucketBytes = 25 * 1024 * 1024;
  static constexpr double kDefaultTimeoutSeconds = kDefaultDistTimeoutSeconds;

  // From the launcher's variables (see dist_env.h): torchrun's RANK/WORLD_SIZE/
  // LOCAL_RANK/MASTER_ADDR/MASTER_PORT, or mpirun's OMPI_COMM_WORLD_* with MASTER_ADDR/
  // MASTER_PORT or IDIFF_DIST_FILE. `device` is this process's device (see
  // device_for_local_rank); it picks NCCL (CUDA) or Gloo (CPU). Bad variables or a
  // timeout <= 0 are a ConfigError; a failed rendezvous an idiff::Error.
  static std::unique_ptr<DistContext> from_environment(c10::Device device, double timeout_seconds);
  static std::unique_ptr<DistContext> from_env(const DistEnv& env, c10::Device device,
                                               double timeout_seconds);
  // No process group at all: rank 0 of 1, every collective a no-op.
  static std::unique_ptr<DistContext> single_process(c10::Device device);

  // The device of this process for a --device flag: in a launched run, "auto" and "cuda"
  // mean cuda:LOCAL_RANK when CUDA is available ("auto": else the CPU), "cuda:N" and
  // "cpu" are taken as given; a single process resolves the flag as resolve_device does.
  // When each process sees one GPU only (CUDA_VISIBLE_DEVICES per rank) that one is used.
  static c10::Device device_for_local_rank(const std::string& device_flag);
  static c10::Device device_for_local_rank(const std::string& device_flag, const DistEnv& env);

  // Which backends this build has (NCCL needs a CUDA LibTorch and nccl.h, Gloo the
  // headers of libgloo-dev at build time).
  static bool built_with_nccl();
  static bool built_with_gloo();

  ~DistContext();
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;

  int64_t rank() const { return env_.rank; }
  int64_t world_size() const { return env_.world_size; }
  int64_t local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  // True when a process group exists (a launched run, even of one process).
  bool is_distributed() const { return pg_ != nullptr; }
  const c10::Device& device() const { return device_; }
  const DistEnv& env() const { return env_; }
  // "none", "gloo" or "nccl".
  const std::string& backend_name() const { return backend_name_; }
  double timeout_seconds() const { return timeout_seconds_; }
  // "rank 0 of 2 (local rank 0, torchrun, rendezvous tcp://127.0.0.1:29500), gloo, timeout 300 s"
  std::string describe() const;

  // Bucket size of broadcast and all_reduce_mean.
  int64_t bucket_bytes() const { return bucket_bytes_; }
  void set_bucket_bytes(int64_t bytes);

  // Collectives. Every rank must make the same calls in the same order with tensors of
  // the same dtypes and shapes (all_gather allows a different first dimension). Tensors
  // best live on device(); others work through a copy (e.g. CPU tensors with NCCL), and
  // results stay on the tensors' devices. Autograd is off inside, so parameters that
  // require grad can be passed.

  // Overwrites every tensor with root's, in place (parameters and EMA at start and after
  // a resume). Tensors are sent in flattened buckets.
  void broadcast(std::vector<at::Tensor>& tensors, int64_t root = 0);
  // Replaces every tensor by its mean over ranks, in place (gradients after the
  // backward of the last microbatch). Floating-point tensors; flattened buckets of
  // bucket_bytes() each, all launched before the first is waited for.
  void all_reduce_mean(std::vector<at::Tensor>& tensors);
  // Every rank's `t`, in rank order (new tensors). Shapes may differ in the first
  // dimension only (e.g. the last batch of samples); dtypes must agree.
  std::vector<at::Tensor> all_gather(const at::Tensor& t);
  // The sum of `t` over ranks (a new tensor).
  at::Tensor all_reduce_sum(const at::Tensor& t);
  // Returns when every rank has called it.
  void barrier();

 private:
  friend class GradReducer;  // launches bucket all-reduces from autograd hooks
  DistContext(DistEnv env, c10::Device device, double timeout_seconds);
  // Throws idiff::Error naming the collective and this rank when `fn` throws.
  void guarded(const char* what, const std::function<void()>& fn);
  // `t` on a device the backend takes (a copy on device() when it does not).
  at::Tensor for_backend(const at::Tensor& t) const;

  DistEnv env_;
  c10::Device device_;
  double timeout_seconds_;
  std::string backend_name_ = "none";
  int64_t bucket_bytes_ = kDefaultBucketBytes;
  std::unique_ptr<dist_detail::ProcessGroup> pg_;
  int previous_cuda_device_ = -1;  // made current again by the destructor (-1: unchanged)
};

}  // namespace idiff
