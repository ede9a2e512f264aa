// AdamW (Loshchilov & Hutter 2019) with PyTorch's update rule and state layout, so the
// optimizer file opt%06d.pt reads and writes like torch.optim.AdamW.state_dict().
//
// Two implementations of one update: `Single` follows PyTorch's single-tensor AdamW op
// for op; `Fused` calls ATen's fused multi-tensor kernel (at::_fused_adamw_: one call per
// dtype/device group, step counters on the parameters' device, so CUDA graphs can capture
// it). `Auto` picks Fused: it equals Single to ~1e-9 relative and is 3-4x faster on the CPU.
//
// With `rule` RAdam the same class is torch.optim.RAdam (Liu et al. 2020), the optimizer of
// consistency_models' training loops: the moments as above, the step rectified by the
// variance of the adaptive rate once enough steps were taken (plain momentum SGD before),
// weight decay added to the gradient (not decoupled). It has one implementation, PyTorch's
// single-tensor update (ATen has no fused RAdam); its file is torch.optim.RAdam's.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace idiff {

// "adamw" or "radam" as a Rule (a ConfigError naming `optimizer` otherwise).
struct AdamWOptions;
void set_optimizer_rule(AdamWOptions& options, const std::string& name);

struct AdamWOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // the reference's default (LibTorch's own AdamW uses 0.01)
  enum class Impl { Auto, Single, Fused } impl = Impl::Auto;
  enum class Rule { AdamW, RAdam } rule = Rule::AdamW;
};

// Per-parameter state as torch.optim.AdamW keeps it: `step` is a float32 scalar tensor.
struct AdamWParamState {
  at::Tensor step;
  at::Tensor exp_avg;
  at::Tensor exp_avg_sq;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);

  // One update from the parameters' .grad() (parameters without a gradient are skipped,
  // as PyTorch does). State is created on first use.
  void step();
  // Drops the gradients (PyTorch's zero_grad(set_to_none=True), its default).
  void zero_grad();

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamWOptions& options() const { return options_; }
  const std::vector<at::Tensor>& params() const { return params_; }

  // State of parameter i (undefined tensors until its first step).
  const std::vector<AdamWParamState>& state() const { return state_; }
  // Replaces the state (e.g. from a checkpoint); shapes must match the parameters.
  void set_state(std::vector<AdamWParamState> state);

 private:
  void init_state(size_t i);
  void step_single(const std::vector<size_t>& active);
  void step_fused(const std::vector<size_t>& active);
  void step_radam(const std::vector<size_t>& active);

  std::vector<at::Tensor> params_;
  AdamWOptions options_;
  std::vector<AdamWParamState> state_;
};

}  // namespace idiff
