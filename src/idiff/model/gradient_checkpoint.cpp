#include "idiff/model/gradient_checkpoint.h"

#include "idiff/common/autocast.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <mutex>

namespace idiff {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Generator default_generator(const at::Device& device) {
  return at::globalContext().defaultGenerator(device);
}

at::Tensor get_rng_state(const at::Device& device) {
  at::Generator gen = default_generator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const at::Device& device, const at::Tensor& state) {
  at::Generator gen = default_generator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

// The autograd node. Arguments: the function (not differentiable), the number of leading
// tensors that are inputs (the rest are parameters), whether to replay the RNG state, and
// all tensors flattened into one list (autograd gives one gradient slot per tensor).
struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  static variable_list forward(AutogradContext* ctx, const TensorFn* fn, int64_t num_inputs,
                               bool preserve_rng, at::TensorList tensors) {
    std::vector<at::Tensor> inputs(tensors.begin(), tensors.begin() + num_inputs);
    ctx->saved_data["fn"] = reinterpret_cast<int64_t>(fn);
    ctx->saved_data["num_inputs"] = num_inputs;
    ctx->saved_data["preserve_rng"] = preserve_rng;
    if (preserve_rng) ctx->saved_data["rng"] = get_rng_state(inputs.at(0).device());
    // The backward recomputes under the autocast state of this forward (it runs after the
    // training step's autocast scope has closed; without it a bf16 activation would meet
    // float32 weights).
    const AutocastState autocast = autocast_state(inputs.at(0).device().type());
    ctx->saved_data["autocast"] = autocast.enabled;
    ctx->saved_data["autocast_dtype"] = static_cast<int64_t>(autocast.dtype);
    ctx->save_for_backward(tensors.vec());
    torch::NoGradGuard no_grad;
    return (*fn)(inputs);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto* fn = reinterpret_cast<const TensorFn*>(ctx->saved_data["fn"].toInt());
    const int64_t num_inputs = ctx->saved_data["num_inputs"].toInt();
    const bool preserve_rng = ctx->saved_data["preserve_rng"].toBool();
    variable_list saved = ctx->get_saved_variables();

    std::vector<at::Tensor> inputs, wrt;
    for (int64_t i = 0; i < num_inputs; ++i) {
      inputs.push_back(saved[i].detach().requires_grad_(saved[i].is_floating_point()));
    }
    std::vector<at::Tensor> outputs;
    {
      torch::AutoGradMode enable(true);
      const AutocastGuard autocast(
          inputs.at(0).device().type(), ctx->saved_data["autocast"].toBool(),
          static_cast<c10::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
      // Shallow views, so an in-place first op cannot modify the detached inputs.
      std::vector<at::Tensor> views;
      for (const auto& x : inputs) views.push_back(x.view_as(x));
      if (preserve_rng) {
        const at::Device device = inputs.at(0).device();
        at::Tensor current = get_rng_state(device);
        set_rng_state(device, ctx->saved_data["rng"].toTensor());
        outputs = (*fn)(views);
        set_rng_state(device, current);
      } else {
        outputs = (*fn)(views);
      }
    }

    // Gradients with respect to every tensor that can take one.
    std::vector<size_t> slots;
    for (size_t i = 0; i < saved.size(); ++i) {
      const at::Tensor& t = i < static_cast<size_t>(num_inputs) ? inputs[i] : saved[i];
      if (t.requires_grad()) {
        wrt.push_back(t);
        slots.push_back(i);
      }
    }
    std::vector<at::Tensor> outs, grads_in;
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (grad_outputs[i].defined() && outputs[i].requires_grad()) {
        outs.push_back(outputs[i]);
        grads_in.push_back(grad_outputs[i]);
      }
    }
    variable_list result(3 + saved.size());  // fn, num_inputs, preserve_rng, tensors...
    if (!outs.empty() && !wrt.empty()) {
      variable_list grads = torch::autograd::grad(outs, wrt, grads_in, /*retain_graph=*/false,
                                                  /*create_graph=*/false, /*allow_unused=*/true);
      for (size_t k = 0; k < slots.size(); ++k) result[3 + slots[k]] = grads[k];
    }
    return result;
  }
};

}  // namespace

std::vector<at::Tensor> checkpoint(const TensorFn& fn, const std::vector<at::Tensor>& inputs,
                                   const std::vector<at::Tensor>& params, bool enabled,
                                   bool preserve_rng) {
  if (!enabled || !at::GradMode::is_enabled()) return fn(inputs);
  std::vector<at::Tensor> all(inputs);
  all.insert(all.end(), params.begin(), params.end());
  return CheckpointFunction::apply(&fn, static_cast<int64_t>(inputs.size()), preserve_rng,
                                   at::TensorList(all));
}

}  // namespace idiff
