// DistContext: set-up from the environment and the collectives (see dist_context.h).
#include "idiff/distributed/dist_context.h"

#include "idiff/common/device.h"
#include "idiff/common/error.h"
#include "idiff/distributed/bucket.h"
#include "idiff/distributed/process_group.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#ifdef IDIFF_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>

namespace idiff {

using dist_detail::short_message;

namespace {

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000.0)));
}

void check_timeout(double seconds) {
  IDIFF_REQUIRE(std::isfinite(seconds) && seconds > 0, ConfigError, "`dist_timeout` ", seconds,
                ": expected a number of seconds > 0");
}

// Shape descriptor exchanged before all_gather: [dtype, ndim, sizes..., -1 padding].
constexpr int64_t kMaxGatherDims = 8;

}  // namespace

DistContext::DistContext(DistEnv env, c10::Device device, double timeout_seconds)
    : env_(std::move(env)), device_(device), timeout_seconds_(timeout_seconds) {}

DistContext::~DistContext() {
#ifdef IDIFF_WITH_CUDA
  if (previous_cuda_device_ >= 0) c10::cuda::set_device(previous_cuda_device_);
#endif
}

std::unique_ptr<DistContext> DistContext::from_environment(c10::Device device,
                                                           double timeout_seconds) {
  return from_env(read_dist_env(), device, timeout_seconds);
}

std::unique_ptr<DistContext> DistContext::from_env(const DistEnv& env, c10::Device device,
                                                   double timeout_seconds) {
  check_timeout(timeout_seconds);
  std::unique_ptr<DistContext> ctx(new DistContext(env, device, timeout_seconds));
#ifdef IDIFF_WITH_CUDA
  // This rank's GPU becomes the current device, so nothing that uses the current device
  // (NCCL's set-up, library handles) makes a context on GPU 0 in every rank.
  if (device.is_cuda() && device.has_index() && c10::cuda::current_device() != device.index()) {
    ctx->previous_cuda_device_ = c10::cuda::current_device();
    c10::cuda::set_device(device.index());
  }
#endif
  if (!env.launched()) return ctx;
  auto pg = dist_detail::create_process_group(env, device, to_ms(timeout_seconds));
  if (!pg.backend) return ctx;  // one CPU process in a build without Gloo: run alone
  ctx->pg_ = std::make_unique<dist_detail::ProcessGroup>(std::move(pg));
  ctx->backend_name_ = ctx->pg_->backend_name;
  return ctx;
}

std::unique_ptr<DistContext> DistContext::single_process(c10::Device device) {
  return std::unique_ptr<DistContext>(new DistContext(DistEnv{}, device, kDefaultTimeoutSeconds));
}

c10::Device DistContext::device_for_local_rank(const std::string& device_flag) {
  return device_for_local_rank(device_flag, read_dist_env());
}

c10::Device DistContext::device_for_local_rank(const std::string& device_flag, const DistEnv& env) {
  if (!env.launched() || (device_flag != "auto" && device_flag != "cuda")) {
    return resolve_device(device_flag);
  }
  if (!torch::cuda::is_available()) return resolve_device(device_flag);  // auto: CPU; cuda: error
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (count == 1) return c10::Device(c10::kCUDA, 0);
  IDIFF_REQUIRE(
      env.local_rank < count, ConfigError,
      env.launcher == "mpirun" ? "OMPI_COMM_WORLD_LOCAL_RANK=" : "LOCAL_RANK=", env.local_rank,
      " but only ", count, " CUDA devices are visible (`device` ", device_flag,
      "): start at most one process per GPU on each machine, or pass `device` cuda:N");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

bool DistContext::built_with_nccl() {
  return dist_detail::nccl_compiled_in();
}
bool DistContext::built_with_gloo() {
  return dist_detail::gloo_compiled_in();
}

std::string DistContext::describe() const {
  if (!pg_) return str(env_.describe(), ", ", device_.str());
  return str(env_.describe(), ", ", backend_name_, " on ", device_.str(), ", timeout ",
             timeout_seconds_, " s");
}

at::Tensor DistContext::for_backend(const at::Tensor& t) const {
  // NCCL takes CUDA tensors only; Gloo takes CPU and CUDA tensors.
  if (backend_name_ == "nccl" && !t.is_cuda()) return t.to(device_);
  return t;
}

void DistContext::set_bucket_bytes(int64_t bytes) {
  TORCH_CHECK(bytes > 0, "bucket size must be positive, got ", bytes);
  bucket_bytes_ = bytes;
}

void DistContext::guarded(const char* what, const std::function<void()>& fn) {
  try {
    at::NoGradGuard no_grad;
    fn();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string msg = short_message(e);
    std::string lower = msg;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    const bool timed_out =
        lower.find("timed out") != std::string::npos || lower.find("timeout") != std::string::npos;
    throw Error(str("distributed ", what, " failed on rank ", env_.rank, " of ", env_.world_size,
                    " (", backend_name_, ", `dist_timeout` ", timeout_seconds_, " s): ",
                    timed_out
                        ? "no reply from another rank within the timeout (it stalled or exited)"
                        : "another rank exited or could not be reached",
                    ": ", msg));
  }
}

void DistContext::broadcast(std::vector<at::Tensor>& tensors, int64_t root) {
  TORCH_CHECK(root >= 0 && root < env_.world_size, "broadcast root ", root, " outside [0, ",
              env_.world_size, ")");
  if (!pg_ || tensors.empty()) return;
  guarded("broadcast", [&] {
    const auto buckets = plan_buckets(tensors, bucket_bytes_);
    std::vector<at::Tensor> flats, comms;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = to_ms(timeout_seconds_);
    for (const auto& b : buckets) {
      flats.push_back(env_.rank == root ? flatten_bucket(tensors, b) : empty_bucket(tensors, b));
      comms.push_back(for_backend(flats.back()));
      std::vector<at::Tensor> io{comms.back()};
      works.push_back(pg_->backend->broadcast(io, opts));
    }
    for (size_t i = 0; i < buckets.size(); ++i) {
      works[i]->wait(opts.timeout);
      if (env_.rank == root) continue;
      if (!comms[i].is_same(flats[i])) flats[i].copy_(comms[i]);
      unflatten_bucket(flats[i], tensors, buckets[i]);
    }
  });
}

void DistContext::all_reduce_mean(std::vector<at::Tensor>& tensors) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.defined() && at::isFloatingType(t.scalar_type()),
                "all_reduce_mean takes defined floating-point tensors");
  }
  if (!pg_ || tensors.empty()) return;
  guarded("gradient all_reduce_mean", [&] {
    const auto buckets = plan_buckets(tensors, bucket_bytes_);
    std::vector<at::Tensor> flats, comms;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = to_ms(timeout_seconds_);
    for (const auto& b : buckets) {
      flats.push_back(flatten_bucket(tensors, b));
      comms.push_back(for_backend(flats.back()));
      std::vector<at::Tensor> io{comms.back()};
      works.push_back(pg_->backend->allreduce(io, opts));
    }
    const double scale = 1.0 / static_cast<double>(env_.world_size);
    for (size_t i = 0; i < buckets.size(); ++i) {
      works[i]->wait(opts.timeout);
      comms[i].mul_(scale);
      if (!comms[i].is_same(flats[i])) flats[i].copy_(comms[i]);
      unflatten_bucket(flats[i], tensors, buckets[i]);
    }
  });
}

at::Tensor DistContext::all_reduce_sum(const at::Tensor& t) {
  at::Tensor out = t.detach().clone(at::MemoryFormat::Contiguous);
  if (!pg_) return out;
  out = for_backend(out);
  guarded("all_reduce_sum", [&] {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = to_ms(timeout_seconds_);
    std::vector<at::Tensor> io{out};
    pg_->backend->allreduce(io, opts)->wait(opts.timeout);
  });
  return out.to(t.device());
}

std::vector<at::Tensor> DistContext::all_gather(const at::Tensor& t) {
  if (!pg_) return {t.detach().clone(at::MemoryFormat::Contiguous)};
  if (t.dim() == 0) {  // scalars (a loss per rank): gathered as [1] tensors
    auto parts = all_gather(t.reshape({1}));
    for (auto& p : parts) p = p.reshape({});
    return parts;
  }
  TORCH_CHECK(t.dim() >= 1 && t.dim() <= kMaxGatherDims, "all_gather takes tensors of 1 to ",
              kMaxGatherDims, " dimensions, got ", t.dim());
  std::vector<at::Tensor> result;
  guarded("all_gather", [&] {
    c10d::AllgatherOptions opts;
    opts.timeout = to_ms(timeout_seconds_);
    auto gather = [&](const at::Tensor& in) {
      std::vector<std::vector<at::Tensor>> outs(1);
      for (int64_t r = 0; r < env_.world_size; ++r) outs[0].push_back(at::empty_like(in));
      std::vector<at::Tensor> ins{in};
      pg_->backend->allgather(outs, ins, opts)->wait(opts.timeout);
      return outs[0];
    };
    // Exchange dtypes and shapes first: a mismatch is an error here, not garbage or a hang.
    at::Tensor meta = at::full({2 + kMaxGatherDims}, -1, at::TensorOptions(at::kLong));
    meta[0] = static_cast<int64_t>(t.scalar_type());
    meta[1] = t.dim();
    for (int64_t d = 0; d < t.dim(); ++d) meta[2 + d] = t.size(d);
    const auto metas = gather(for_backend(meta));
    std::vector<std::vector<int64_t>> shapes;
    int64_t max_first = 0;
    for (int64_t r = 0; r < env_.world_size; ++r) {
      const at::Tensor m = metas[r].cpu();
      const auto* p = m.data_ptr<int64_t>();
      const std::vector<int64_t> shape(p + 2, p + 2 + p[1]);
      const bool same_rest = p[0] == meta[0].item<int64_t>() && p[1] == t.dim() &&
                             std::equal(shape.begin() + 1, shape.end(), t.sizes().begin() + 1);
      IDIFF_REQUIRE(same_rest, Error, "distributed all_gather: rank ", r, " sends dtype ",
                    c10::toString(static_cast<c10::ScalarType>(p[0])), " shape ",
                    c10::IntArrayRef(shape), " but rank ", env_.rank, " sends ", t.scalar_type(),
                    " ", t.sizes(), " (only the first dimension may differ)");
      max_first = std::max(max_first, shape[0]);
      shapes.push_back(shape);
    }
    at::Tensor in = t.detach().contiguous();
    if (in.size(0) < max_first) {
      std::vector<int64_t> pad_shape = in.sizes().vec();
      pad_shape[0] = max_first - in.size(0);
      in = at::cat({in, at::zeros(pad_shape, in.options())});
    }
    result = gather(for_backend(in));
    for (int64_t r = 0; r < env_.world_size; ++r) {
      result[r] = result[r].to(t.device());
      if (shapes[r][0] < max_first) result[r] = result[r].narrow(0, 0, shapes[r][0]).clone();
    }
  });
  return result;
}

void DistContext::barrier() {
  if (!pg_) return;
  // A one-element all-reduce, waited for on the host: the same on Gloo and NCCL, and
  // bounded by the collective timeout.
  const at::Tensor one = at::ones({1}, at::TensorOptions(device_).dtype(at::kFloat));
  const at::Tensor sum = all_reduce_sum(one);
  TORCH_CHECK(sum.item<float>() == static_cast<float>(env_.world_size), "barrier sum ",
              sum.item<float>(), " != world size ", env_.world_size);
}

}  // namespace idiff
