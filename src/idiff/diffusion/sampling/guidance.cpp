#include "idiff/diffusion/sampling/guidance.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>

namespace idiff {

CondFn classifier_cond_fn(ModelFn logits_fn, at::Tensor y, double scale) {
  return [logits_fn, y, scale](const at::Tensor& x, const at::Tensor& t) {
    at::Tensor grad;
    {
      // Sampling runs without gradients, often in inference mode; the gradient needs both
      // back, and a copy of x made outside inference mode.
      c10::InferenceMode normal_tensors(false);
      at::AutoGradMode with_grad(true);
      const at::Tensor x_in = x.detach().clone().requires_grad_(true);
      const at::Tensor logits = logits_fn(x_in, t.detach().clone());
      IDIFF_REQUIRE(y.dim() == 1 && y.size(0) == x.size(0), Error,
                    "classifier guidance: ", y.sizes(), " labels for a batch of ", x.size(0));
      const at::Tensor selected =
          at::log_softmax(logits.to(at::kFloat), -1).gather(1, y.unsqueeze(1));
      grad = torch::autograd::grad({selected.sum()}, {x_in})[0];
    }
    return (grad * scale).to(x.scalar_type());
  };
}

ModelFn classifier_free_guidance(ModelFn cond_and_uncond, double scale) {
  return [cond_and_uncond, scale](const at::Tensor& x, const at::Tensor& t) {
    const int64_t n = x.size(0), c = x.size(1);
    const at::Tensor out = cond_and_uncond(at::cat({x, x}), at::cat({t, t}));
    const at::Tensor cond = out.narrow(0, 0, n), uncond = out.narrow(0, n, n);
    const at::Tensor mean =
        uncond.narrow(1, 0, c) + scale * (cond.narrow(1, 0, c) - uncond.narrow(1, 0, c));
    if (cond.size(1) == c) return mean;
    return at::cat({mean, cond.narrow(1, c, cond.size(1) - c)}, 1);
  };
}

}  // namespace idiff
