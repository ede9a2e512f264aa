// GradReducer: bucket all-reduces launched from gradient-accumulator hooks (see
// grad_reducer.h). The hooks are LibTorch's autograd post hooks on each parameter's
// AccumulateGrad node, the mechanism of PyTorch DDP's Reducer (PyTorch's
// torch/csrc/distributed/c10d/reducer.cpp).
#include "idiff/distributed/grad_reducer.h"

#include "idiff/common/error.h"
#include "idiff/distributed/bucket.h"
#include "idiff/distributed/process_group.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <exception>
#include <mutex>

namespace idiff {

struct GradReducer::State {
  std::vector<at::Tensor> params;
  std::vector<Bucket> buckets;    // indices into params, in launch order
  std::vector<size_t> bucket_of;  // param -> bucket
  std::vector<size_t> pending;    // per bucket: parameters whose gradient is not final
  std::vector<char> ready;        // per parameter
  std::vector<at::Tensor> flats;  // per bucket, once launched
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  size_t next_launch = 0;
  size_t launched_in_backward = 0;
  bool armed = false;
  int64_t twice = -1;        // a parameter whose gradient came twice
  std::exception_ptr error;  // a launch that failed inside a hook
  std::mutex mu;

  c10d::Backend* backend = nullptr;
  std::chrono::milliseconds timeout{0};
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hook_keys;

  void reset() {
    for (size_t b = 0; b < buckets.size(); ++b) pending[b] = buckets[b].size();
    std::fill(ready.begin(), ready.end(), 0);
    flats.assign(buckets.size(), at::Tensor());
    works.assign(buckets.size(), {});
    next_launch = 0;
    launched_in_backward = 0;
    twice = -1;
    error = nullptr;
  }

  std::vector<at::Tensor> grads() const {
    std::vector<at::Tensor> g;
    g.reserve(params.size());
    for (const auto& p : params) g.push_back(p.grad());
    return g;
  }

  // Launches the complete buckets at the head of the order (caller holds mu).
  void launch_ready() {
    while (next_launch < buckets.size() && pending[next_launch] == 0) {
      const size_t b = next_launch++;
      flats[b] = flatten_bucket(grads(), buckets[b]);
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      opts.timeout = timeout;
      std::vector<at::Tensor> io{flats[b]};
      works[b] = backend->allreduce(io, opts);
    }
  }

  void mark_ready(size_t i) {
    if (ready[i]) {
      twice = static_cast<int64_t>(i);
      return;
    }
    ready[i] = 1;
    --pending[bucket_of[i]];
  }

  // The hook: parameter i's gradient is final for this backward.
  void on_gradient(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || error) return;
    try {
      mark_ready(i);
      const size_t before = next_launch;
      launch_ready();
      launched_in_backward += next_launch - before;
    } catch (...) {
      error = std::current_exception();  // rethrown by finish(), outside the backward
    }
  }
};

GradReducer::GradReducer(DistContext& ctx, std::vector<at::Tensor> params)
    : ctx_(ctx), state_(std::make_shared<State>()) {
  if (!ctx_.is_distributed()) return;
  State& s = *state_;
  s.params = std::move(params);
  s.backend = ctx_.pg_->backend.get();
  s.timeout = std::chrono::milliseconds(static_cast<int64_t>(ctx_.timeout_seconds() * 1000.0));
  // Reverse order: the backward produces the last layers' gradients first.
  std::vector<at::Tensor> reversed(s.params.rbegin(), s.params.rend());
  const size_t n = s.params.size();
  for (Bucket b : plan_buckets(reversed, ctx_.bucket_bytes())) {
    for (size_t& i : b) i = n - 1 - i;
    s.buckets.push_back(std::move(b));
  }
  s.bucket_of.resize(n);
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    for (size_t i : s.buckets[b]) s.bucket_of[i] = b;
  }
  s.pending.resize(s.buckets.size());
  s.ready.resize(n);
  s.reset();

  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = s.params[i];
    TORCH_CHECK(p.is_leaf() && p.requires_grad(), "GradReducer: parameter ", i,
                " is not a leaf tensor requiring grad");
    TORCH_CHECK(ctx_.backend_name() != "nccl" || p.is_cuda(), "GradReducer: parameter ", i,
                " is on ", p.device(), " but NCCL needs CUDA tensors");
    auto acc = torch::autograd::impl::grad_accumulator(p);
    const uintptr_t key =
        acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
            [weak, i](const torch::autograd::variable_list& outputs,
                      const torch::autograd::variable_list&) {
              if (auto st = weak.lock()) st->on_gradient(i);
              return outputs;
            }));
    s.accumulators.push_back(std::move(acc));
    s.hook_keys.push_back(key);
  }
}

GradReducer::~GradReducer() {
  State& s = *state_;
  for (size_t i = 0; i < s.accumulators.size(); ++i)
    s.accumulators[i]->del_post_hook(s.hook_keys[i]);
}

void GradReducer::prepare_for_backward() {
  if (!ctx_.is_distributed()) return;
  std::lock_guard<std::mutex> lock(state_->mu);
  TORCH_CHECK(!state_->armed, "GradReducer: prepare_for_backward() twice without finish()");
  state_->reset();
  state_->armed = true;
}

void GradReducer::finish() {
  if (!ctx_.is_distributed()) return;
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  TORCH_CHECK(s.armed, "GradReducer: finish() without prepare_for_backward()");
  s.armed = false;
  int64_t twice = -1;
  ctx_.guarded("gradient all_reduce_mean", [&] {
    if (s.error) std::rethrow_exception(s.error);
    twice = s.twice;
    // Parameters the backward did not reach: zero gradients, so every rank sends the
    // same buckets.
    for (size_t i = 0; i < s.params.size(); ++i) {
      if (s.ready[i]) continue;
      at::Tensor& g = s.params[i].mutable_grad();
      if (!g.defined()) g = at::zeros_like(s.params[i]);
      s.mark_ready(i);
    }
    s.launch_ready();
    std::vector<at::Tensor> grads = s.grads();
    const double scale = 1.0 / static_cast<double>(ctx_.world_size());
    for (size_t b = 0; b < s.buckets.size(); ++b) {
      s.works[b]->wait(s.timeout);
      s.flats[b].mul_(scale);
      unflatten_bucket(s.flats[b], grads, s.buckets[b]);
    }
  });
  s.works.assign(s.buckets.size(), {});
  s.flats.assign(s.buckets.size(), at::Tensor());
  IDIFF_REQUIRE(twice < 0, Error, "distributed gradient averaging: parameter ", twice, " (shape ",
                s.params[static_cast<size_t>(twice)].sizes(),
                ") received its gradient twice in one backward pass after prepare_for_backward(); "
                "call it before the last microbatch's backward only");
}

size_t GradReducer::num_buckets() const {
  return state_->buckets.size();
}

size_t GradReducer::launched_during_backward() const {
  return state_->launched_in_backward;
}

}  // namespace idiff
