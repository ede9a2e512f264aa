// LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
// Metric") as consistency_models computes it for `--loss_norm lpips`: piq's
// LPIPS(replace_pooling=True, reduction="none"). The images, in [0, 1], are standardised by
// ImageNet's mean and std and run through VGG16's convolutions with average pooling in
// place of max pooling; at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 each feature
// vector is unit-normalised over the channels (x / (|x| + 1e-10)), and
//   LPIPS(x, y) = sum_layers sum_c w_c mean_hw (f_x - f_y)^2.
//
// idiff ships no weights and downloads none: the user brings torchvision's ImageNet VGG16
// (vgg16-397923af.pth; its features.N.weight/bias are read, the classifier ignored) and the
// five LPIPS layer weights (piq's lpips_weights.pt, a list of five [1, C, 1, 1] tensors, or
// any tensor file holding five tensors of 64, 128, 256, 512, 512 values, in that order).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

namespace idiff {

class Lpips {
 public:
  // FileErrors name the file and what was expected.
  static Lpips load(const std::string& vgg16_path, const std::string& weights_path);

  Lpips to(c10::Device device) const;
  // x, y: [N, 3, H, W] in [0, 1] (one channel is repeated to three); [N], differentiable in
  // x and y (the weights are constants). Computed in float32.
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& y) const;

 private:
  std::vector<at::Tensor> conv_weight_, conv_bias_;  // VGG16's 13 convolutions
  std::vector<at::Tensor> layer_weight_;             // [1, C, 1, 1] for the 5 taps
};

}  // namespace idiff
