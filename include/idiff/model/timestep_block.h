// TimestepBlock and TimestepEmbedSequential (reference: unet.py). A TimestepBlock's
// forward takes the timestep embedding as a second argument; the sequential container
// hands the embedding only to the children that take it. Children are registered as
// "0", "1", ... like nn.Sequential, so state-dict keys match the reference's.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace idiff {

class TimestepBlock : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& emb) = 0;
};

class TimestepEmbedSequentialImpl : public torch::nn::Module {
 public:
  TimestepEmbedSequentialImpl() = default;

  // Appends a module holder (ResBlock, AttentionBlock, Conv2d, ...) under the next index.
  template <typename Holder>
  void push_back(Holder module) {
    using Impl = typename Holder::Impl;
    register_module(std::to_string(calls_.size()), module);
    auto ptr = module.ptr();
    if constexpr (std::is_base_of_v<TimestepBlock, Impl>) {
      calls_.push_back(
          [ptr](const at::Tensor& x, const at::Tensor& emb) { return ptr->forward(x, emb); });
    } else {
      calls_.push_back([ptr](const at::Tensor& x, const at::Tensor&) { return ptr->forward(x); });
    }
  }

  at::Tensor forward(at::Tensor x, const at::Tensor& emb) {
    for (auto& call : calls_) x = call(x, emb);
    return x;
  }

  size_t size() const { return calls_.size(); }

 private:
  std::vector<std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>> calls_;
};
TORCH_MODULE(TimestepEmbedSequential);

}  // namespace idiff
