#include "test_fast_paths.h"

#include "test_util.h"

#include "idiff/common/autocast.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>

namespace idiff::test {

std::pair<at::Tensor, at::Tensor> attention_and_grad(const at::Tensor& qkv, AttentionImpl impl,
                                                     const at::Tensor& grad_out) {
  at::Tensor x = qkv.detach().clone().requires_grad_(true);
  at::Tensor out = qkv_attention(x, impl);
  out.backward(grad_out);
  return {out.detach(), x.grad()};
}

std::vector<at::Tensor> run_adamw(AdamWOptions::Impl impl, int steps, const c10::Device& device) {
  at::manual_seed(3);
  std::vector<at::Tensor> params = {at::randn({37}), at::randn({8, 4, 3, 3}), at::randn({5, 7})};
  for (auto& p : params) p = p.to(device).requires_grad_(true);
  AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.05;
  o.impl = impl;
  AdamW opt(params, o);
  at::Generator gen = at::detail::createCPUGenerator(11);
  for (int s = 0; s < steps; ++s) {
    for (auto& p : params) p.mutable_grad() = at::randn(p.sizes(), gen).to(device);
    opt.step();
  }
  std::vector<at::Tensor> out;
  for (const auto& st : opt.state()) EXPECT_EQ(st.step.item<float>(), static_cast<float>(steps));
  for (const auto& p : params) out.push_back(p.detach().cpu());
  return out;
}

double checkpoint_grad_error_under_autocast(const c10::Device& device) {
  ModelConfig cfg = small_unet_config();
  cfg.attention_resolutions = "16";
  UNetModel plain = create_model(cfg);
  cfg.use_checkpoint = true;
  UNetModel ckpt = create_model(cfg);
  randomize_parameters(plain->parameters());
  load_state_dict(*ckpt, state_dict(*plain), "plain model");
  plain->to(device);
  ckpt->to(device);
  const at::Tensor x = at::randn({2, 3, 32, 32}).to(device);
  const at::Tensor t = at::tensor({3.0f, 700.0f}).to(device);
  for (UNetModel* m : {&plain, &ckpt}) {
    at::Tensor out;
    {
      const AutocastGuard autocast(device.type(), true, at::kBFloat16);
      out = (*m)->forward(x, t);
    }
    out.to(at::kFloat).square().sum().backward();
  }
  const TensorMap a = state_dict(*plain), b = state_dict(*ckpt);
  std::vector<at::Tensor> ga, gb;
  for (const auto& [name, p] : a) {
    EXPECT_TRUE(p.grad().defined() && b.at(name).grad().defined()) << name;
    if (!p.grad().defined() || !b.at(name).grad().defined()) return 1.0;
    ga.push_back(p.grad().flatten());
    gb.push_back(b.at(name).grad().flatten());
  }
  return rel_error(at::cat(gb), at::cat(ga));
}

}  // namespace idiff::test
