// sync_params and average_gradients (see data_parallel.h).
#include "idiff/distributed/data_parallel.h"

#include <ATen/ATen.h>

namespace idiff {

void sync_params(DistContext& ctx, const std::vector<at::Tensor>& tensors) {
  if (!ctx.is_distributed()) return;
  std::vector<at::Tensor> views = tensors;  // same storage: the broadcast writes through
  ctx.broadcast(views, 0);
}

void average_gradients(DistContext& ctx, const std::vector<at::Tensor>& params) {
  if (!ctx.is_distributed()) return;
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const at::Tensor& p : params) {
    at::Tensor& g = p.mutable_grad();
    if (!g.defined()) g = at::zeros_like(p);
    grads.push_back(g);
  }
  ctx.all_reduce_mean(grads);
}

}  // namespace idiff
