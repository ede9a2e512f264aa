#include "idiff/train/fp16_util.h"

#include <ATen/ATen.h>

namespace idiff {
namespace {

at::Tensor flatten_dense(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.detach().to(at::kFloat).reshape({-1}));
  return at::cat(flat);
}

}  // namespace

std::vector<at::Tensor> make_master_params(const std::vector<at::Tensor>& model_params) {
  at::Tensor master = flatten_dense(model_params);
  master.requires_grad_(true);
  return {master};
}

void model_grads_to_master_grads(const std::vector<at::Tensor>& model_params,
                                 const std::vector<at::Tensor>& master_params) {
  std::vector<at::Tensor> grads;
  grads.reserve(model_params.size());
  for (const auto& p : model_params) {
    grads.push_back(p.grad().defined() ? p.grad() : at::zeros_like(p));
  }
  master_params[0].mutable_grad() = flatten_dense(grads);
}

std::vector<at::Tensor> unflatten_master_params(const std::vector<at::Tensor>& model_params,
                                                const at::Tensor& flat) {
  std::vector<at::Tensor> out;
  out.reserve(model_params.size());
  int64_t offset = 0;
  for (const auto& p : model_params) {
    out.push_back(flat.detach().narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
  return out;
}

void master_params_to_model_params(const std::vector<at::Tensor>& model_params,
                                   const std::vector<at::Tensor>& master_params) {
  at::NoGradGuard no_grad;
  const auto views = unflatten_master_params(model_params, master_params[0]);
  for (size_t i = 0; i < model_params.size(); ++i) model_params[i].detach().copy_(views[i]);
}

bool grads_are_finite(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> checks;
  for (const auto& p : params) {
    if (p.grad().defined()) checks.push_back(at::isfinite(p.grad()).all());
  }
  if (checks.empty()) return true;
  return at::stack(checks).all().item<bool>();
}

}  // namespace idiff
