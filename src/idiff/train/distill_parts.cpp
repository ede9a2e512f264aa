// What the Karras distillation objectives (consistency_objective.cpp, progdist_objective.cpp)
// share: the loss norm with its LPIPS network, their frozen networks, the schedule flags.
#include "idiff/common/error.h"
#include "idiff/train/training_objective.h"

#include <ATen/ATen.h>

namespace idiff {

ObjectiveLossNorm::ObjectiveLossNorm(const TrainConfig& train) : norm_(train.loss_norm) {
  check_consistency_loss_norm(train.loss_norm);
  if (train.loss_norm == "lpips") {
    IDIFF_REQUIRE(!train.lpips_vgg16.empty() && !train.lpips_weights.empty(), ConfigError,
                  "`loss_norm` lpips needs the LPIPS network, which idiff does not ship or "
                  "download: give `lpips_vgg16` (torchvision's vgg16-397923af.pth) and "
                  "`lpips_weights` (piq's lpips_weights.pt)");
    lpips_ = Lpips::load(train.lpips_vgg16, train.lpips_weights);
  } else {
    IDIFF_REQUIRE(train.lpips_vgg16.empty() && train.lpips_weights.empty(), ConfigError,
                  "`lpips_vgg16` and `lpips_weights` are for `loss_norm` lpips, not ",
                  train.loss_norm);
  }
}

void ObjectiveLossNorm::to(c10::Device device) {
  if (!lpips_) return;
  norm_.lpips = [net = lpips_->to(device)](const at::Tensor& x, const at::Tensor& y) {
    return net(x, y);
  };
}

ObjectiveDraws draw_level_indices(const TrainBatch& batch, const at::Tensor& images, int64_t count,
                                  const std::string& objective) {
  IDIFF_REQUIRE(!batch.timesteps.defined(), Error, "the ", objective,
                " objective draws its own noise levels, not timesteps");
  const int64_t n = images.size(0);
  ObjectiveDraws d;
  d.t = at::randint(0, count, {n}, images.options().dtype(at::kLong));
  d.weights = at::ones({n}, images.options().dtype(at::kFloat));
  d.noise = batch_noise(batch, images);
  return d;
}

void freeze_network(UNetModel& net, c10::Device device, bool dropout) {
  net->to(device);
  net->train(dropout);
  for (auto& p : net->parameters()) p.set_requires_grad(false);
}

std::vector<at::Tensor> network_parameters(const UNetModel& net) {
  std::vector<at::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p);
  return out;
}

TensorMap float_state_dict(const UNetModel& net) {
  TensorMap sd;
  for (const auto& item : net->named_parameters()) {
    sd.insert(item.key(), item.value().detach().to(at::kCPU, at::kFloat).contiguous());
  }
  return sd;
}

KarrasParams with_distillation(KarrasParams params, bool distillation) {
  params.distillation = distillation;
  return params;
}

EmaScalesOptions ema_scales_options(const TrainConfig& train) {
  EmaScalesOptions o;
  o.target_ema_mode = train.target_ema_mode;
  o.start_ema = train.start_ema;
  o.scale_mode = train.scale_mode;
  o.start_scales = train.start_scales;
  o.end_scales = train.end_scales;
  o.total_steps = train.total_training_steps;
  o.distill_steps_per_iter = train.distill_steps_per_iter;
  return o;
}

TeacherDenoiser edm_teacher(const KarrasParams& params) {
  return [edm = KarrasDenoiser(with_distillation(params, false))](const ModelFn& net) {
    return DenoiseFn([edm, net](const at::Tensor& x, const at::Tensor& sigma) {
      return edm.denoise(net, x, sigma).denoised;
    });
  };
}

ModelFn network_fn(const UNetModel& net, const TeacherNet& how, const ModelKwargs& kwargs) {
  if (how) return how(kwargs);
  return [impl = net.ptr(), kwargs](const at::Tensor& x, const at::Tensor& t) {
    return impl->forward_kwargs(x, t, kwargs);
  };
}

}  // namespace idiff
