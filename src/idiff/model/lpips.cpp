#include "idiff/model/lpips.h"

#include "idiff/common/error.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_convert.h"
#include "idiff/io/tensor_file.h"

#include <ATen/ATen.h>

#include <array>

namespace idiff {
namespace {

// VGG16's features: the index of each convolution in torchvision's nn.Sequential, its
// output channels, and whether LPIPS taps the ReLU after it / a pooling follows it.
struct VggConv {
  int index;
  int64_t channels;
  bool tap;
};
constexpr std::array<VggConv, 13> kVgg16 = {{{0, 64, false},
                                             {2, 64, true},
                                             {5, 128, false},
                                             {7, 128, true},
                                             {10, 256, false},
                                             {12, 256, false},
                                             {14, 256, true},
                                             {17, 512, false},
                                             {19, 512, false},
                                             {21, 512, true},
                                             {24, 512, false},
                                             {26, 512, false},
                                             {28, 512, true}}};
constexpr std::array<int64_t, 5> kTapChannels = {64, 128, 256, 512, 512};

// The five layer weights of `path`: a .pt list (piq's file), else the tensors of any tensor
// file in order.
std::vector<at::Tensor> read_layer_weights(const std::string& path) {
  std::vector<at::Tensor> out;
  if (detect_tensor_file(path) == TensorFileKind::Pt) {
    const PickleValue v = read_pt(path);
    if (v.is_sequence()) {
      for (const PickleValue& item : v.items()) out.push_back(to_tensor(item));
    }
  }
  if (out.empty()) {
    for (const auto& [name, t] : load_tensor_file(path)) out.push_back(t);
  }
  IDIFF_REQUIRE(out.size() == kTapChannels.size(), FileError, path,
                ": expected LPIPS' five layer weights (64, 128, 256, 512, 512 values), found ",
                out.size(), " tensors");
  for (size_t i = 0; i < out.size(); ++i) {
    IDIFF_REQUIRE(out[i].numel() == kTapChannels[i] && out[i].is_floating_point(), FileError, path,
                  ": LPIPS layer ", i + 1, " must hold ", kTapChannels[i],
                  " floating-point weights, found ", out[i].sizes());
    out[i] = out[i].to(at::kFloat).reshape({1, kTapChannels[i], 1, 1});
  }
  return out;
}

}  // namespace

Lpips Lpips::load(const std::string& vgg16_path, const std::string& weights_path) {
  const TensorMap vgg = load_tensor_file(vgg16_path);
  Lpips l;
  int64_t in = 3;
  for (const VggConv& c : kVgg16) {
    const std::string w = str("features.", c.index, ".weight"),
                      b = str("features.", c.index, ".bias");
    IDIFF_REQUIRE(vgg.contains(w) && vgg.contains(b), FileError, vgg16_path,
                  ": expected torchvision's VGG16 state dict (", w, " missing)");
    const at::Tensor weight = vgg.at(w), bias = vgg.at(b);
    IDIFF_REQUIRE(weight.sizes() == at::IntArrayRef({c.channels, in, 3, 3}) &&
                      bias.sizes() == at::IntArrayRef({c.channels}),
                  FileError, vgg16_path, ": ", w, " is ", weight.sizes(), ", VGG16's is [",
                  c.channels, ", ", in, ", 3, 3]");
    l.conv_weight_.push_back(weight.to(at::kFloat));
    l.conv_bias_.push_back(bias.to(at::kFloat));
    in = c.channels;
  }
  l.layer_weight_ = read_layer_weights(weights_path);
  return l;
}

Lpips Lpips::to(c10::Device device) const {
  Lpips l;
  for (const at::Tensor& t : conv_weight_) l.conv_weight_.push_back(t.to(device));
  for (const at::Tensor& t : conv_bias_) l.conv_bias_.push_back(t.to(device));
  for (const at::Tensor& t : layer_weight_) l.layer_weight_.push_back(t.to(device));
  return l;
}

at::Tensor Lpips::operator()(const at::Tensor& x, const at::Tensor& y) const {
  IDIFF_REQUIRE(x.dim() == 4 && x.sizes() == y.sizes() && (x.size(1) == 1 || x.size(1) == 3), Error,
                "LPIPS compares [N, 3, H, W] images of one shape, got ", x.sizes(), " and ",
                y.sizes());
  const int64_t n = x.size(0);
  // Both images in one pass through the network: [2N, 3, H, W].
  at::Tensor h = at::cat({x, y}).to(at::kFloat).expand({2 * n, 3, x.size(2), x.size(3)});
  const at::Tensor mean = at::tensor({0.485, 0.456, 0.406}, h.options()).view({1, 3, 1, 1});
  const at::Tensor std = at::tensor({0.229, 0.224, 0.225}, h.options()).view({1, 3, 1, 1});
  h = (h - mean) / std;
  at::Tensor total = at::zeros({n}, h.options());
  size_t tap = 0;
  for (size_t i = 0; i < kVgg16.size(); ++i) {
    h = at::relu(at::conv2d(h, conv_weight_[i], conv_bias_[i], 1, 1));
    if (!kVgg16[i].tap) continue;
    const at::Tensor f = h / (h.pow(2).sum(1, true).sqrt() + 1e-10);
    const at::Tensor d = (f.narrow(0, 0, n) - f.narrow(0, n, n)).pow(2);
    total = total + (d * layer_weight_[tap]).mean({2, 3}).sum(1);
    if (++tap == layer_weight_.size()) break;
    h = at::avg_pool2d(h, 2, 2);
  }
  return total;
}

}  // namespace idiff
