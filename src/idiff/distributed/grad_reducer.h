// Gradient averaging overlapped with the backward pass, as PyTorch's
// DistributedDataParallel does with its Reducer: parameters are grouped into buckets in
// reverse order (the order the backward produces their gradients); a hook on each
// parameter's gradient accumulator notes when its gradient is final, and a bucket whose
// gradients are all final is flattened and its all-reduce launched while the backward
// goes on. Buckets are launched strictly in order, so every rank issues the same
// collectives in the same sequence whatever order its gradients arrive in.
//
// Use, per optimizer step:
//   zero the gradients;
//   for each microbatch: if it is the last, reducer.prepare_for_backward(); loss.backward();
//   reducer.finish();   // every .grad() now holds the mean over ranks
//   optimizer step.
// Backward passes without prepare_for_backward (earlier microbatches) only accumulate
// locally. The result equals average_gradients (data_parallel.h) bit for bit.
#pragma once

#include "idiff/distributed/dist_context.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace idiff {

class GradReducer {
 public:
  // Hooks the parameters (leaf tensors requiring grad). For a single-process context
  // nothing is hooked and both calls below do nothing.
  GradReducer(DistContext& ctx, std::vector<at::Tensor> params);
  ~GradReducer();  // removes the hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  // Arms the hooks for the next backward pass.
  void prepare_for_backward();
  // Launches the buckets still waiting (parameters that got no gradient get a zero one,
  // as in average_gradients), waits for all, and writes the means into the .grad()s.
  // A parameter whose gradient arrived twice in the armed backward (prepare called
  // before more than one backward, or a graph that accumulates one parameter twice)
  // would have been sent stale: that is an idiff::Error naming it, raised once every
  // launched collective has completed.
  void finish();

  size_t num_buckets() const;
  // Buckets whose all-reduce started during the last backward, before finish().
  size_t launched_during_backward() const;

  struct State;

 private:
  DistContext& ctx_;
  std::shared_ptr<State> state_;
};

}  // namespace idiff
