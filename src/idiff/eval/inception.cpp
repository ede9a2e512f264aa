#include "idiff/eval/inception.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/functional/upsampling.h>

#include <filesystem>

namespace idiff {

const char* const kInceptionWeightsUrl =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth";

namespace {

namespace F = torch::nn::functional;

// TensorFlow's average pool: 3x3, stride 1, padding 1, the padding not counted.
at::Tensor tf_avg_pool(const at::Tensor& x) {
  return at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false,
                        /*count_include_pad=*/false);
}

at::Tensor max_pool_3x3_s2(const at::Tensor& x) {
  return at::max_pool2d(x, {3, 3}, {2, 2});
}

}  // namespace

BasicConv2d basic_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return BasicConv2d(in, out, kernel, stride, padding);
}

BasicConv2d basic_conv(int64_t in, int64_t out, std::array<int64_t, 2> kernel,
                       std::array<int64_t, 2> padding) {
  return BasicConv2d(in, out, torch::ExpandingArray<2>({kernel[0], kernel[1]}), 1,
                     torch::ExpandingArray<2>({padding[0], padding[1]}));
}

BasicConv2dImpl::BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                                 torch::ExpandingArray<2> stride,
                                 torch::ExpandingArray<2> padding) {
  conv_ = register_module(
      "conv",
      torch::nn::Conv2d(
          torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false)));
  bn_ = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(1e-3)));
}

at::Tensor BasicConv2dImpl::forward(const at::Tensor& x) {
  return at::relu(bn_->forward(conv_->forward(x)));
}

InceptionAImpl::InceptionAImpl(int64_t in, int64_t pool_features)
    : branch1x1(register_module("branch1x1", basic_conv(in, 64, 1))),
      branch5x5_1(register_module("branch5x5_1", basic_conv(in, 48, 1))),
      branch5x5_2(register_module("branch5x5_2", basic_conv(48, 64, 5, 1, 2))),
      branch3x3dbl_1(register_module("branch3x3dbl_1", basic_conv(in, 64, 1))),
      branch3x3dbl_2(register_module("branch3x3dbl_2", basic_conv(64, 96, 3, 1, 1))),
      branch3x3dbl_3(register_module("branch3x3dbl_3", basic_conv(96, 96, 3, 1, 1))),
      branch_pool(register_module("branch_pool", basic_conv(in, pool_features, 1))) {}

at::Tensor InceptionAImpl::forward(const at::Tensor& x) {
  at::Tensor b5 = branch5x5_2(branch5x5_1(x));
  at::Tensor b3 = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  return at::cat({branch1x1(x), b5, b3, branch_pool(tf_avg_pool(x))}, 1);
}

InceptionBImpl::InceptionBImpl(int64_t in)
    : branch3x3(register_module("branch3x3", basic_conv(in, 384, 3, 2))),
      branch3x3dbl_1(register_module("branch3x3dbl_1", basic_conv(in, 64, 1))),
      branch3x3dbl_2(register_module("branch3x3dbl_2", basic_conv(64, 96, 3, 1, 1))),
      branch3x3dbl_3(register_module("branch3x3dbl_3", basic_conv(96, 96, 3, 2))) {}

at::Tensor InceptionBImpl::forward(const at::Tensor& x) {
  at::Tensor b3 = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  return at::cat({branch3x3(x), b3, max_pool_3x3_s2(x)}, 1);
}

InceptionCImpl::InceptionCImpl(int64_t in, int64_t c7)
    : branch1x1(register_module("branch1x1", basic_conv(in, 192, 1))),
      branch7x7_1(register_module("branch7x7_1", basic_conv(in, c7, 1))),
      branch7x7_2(register_module("branch7x7_2", basic_conv(c7, c7, {1, 7}, {0, 3}))),
      branch7x7_3(register_module("branch7x7_3", basic_conv(c7, 192, {7, 1}, {3, 0}))),
      branch7x7dbl_1(register_module("branch7x7dbl_1", basic_conv(in, c7, 1))),
      branch7x7dbl_2(register_module("branch7x7dbl_2", basic_conv(c7, c7, {7, 1}, {3, 0}))),
      branch7x7dbl_3(register_module("branch7x7dbl_3", basic_conv(c7, c7, {1, 7}, {0, 3}))),
      branch7x7dbl_4(register_module("branch7x7dbl_4", basic_conv(c7, c7, {7, 1}, {3, 0}))),
      branch7x7dbl_5(register_module("branch7x7dbl_5", basic_conv(c7, 192, {1, 7}, {0, 3}))),
      branch_pool(register_module("branch_pool", basic_conv(in, 192, 1))) {}

at::Tensor InceptionCImpl::forward(const at::Tensor& x) {
  at::Tensor b7 = branch7x7_3(branch7x7_2(branch7x7_1(x)));
  at::Tensor bd = branch7x7dbl_1(x);
  bd = branch7x7dbl_5(branch7x7dbl_4(branch7x7dbl_3(branch7x7dbl_2(bd))));
  return at::cat({branch1x1(x), b7, bd, branch_pool(tf_avg_pool(x))}, 1);
}

InceptionDImpl::InceptionDImpl(int64_t in)
    : branch3x3_1(register_module("branch3x3_1", basic_conv(in, 192, 1))),
      branch3x3_2(register_module("branch3x3_2", basic_conv(192, 320, 3, 2))),
      branch7x7x3_1(register_module("branch7x7x3_1", basic_conv(in, 192, 1))),
      branch7x7x3_2(register_module("branch7x7x3_2", basic_conv(192, 192, {1, 7}, {0, 3}))),
      branch7x7x3_3(register_module("branch7x7x3_3", basic_conv(192, 192, {7, 1}, {3, 0}))),
      branch7x7x3_4(register_module("branch7x7x3_4", basic_conv(192, 192, 3, 2))) {}

at::Tensor InceptionDImpl::forward(const at::Tensor& x) {
  at::Tensor b3 = branch3x3_2(branch3x3_1(x));
  at::Tensor b7 = branch7x7x3_4(branch7x7x3_3(branch7x7x3_2(branch7x7x3_1(x))));
  return at::cat({b3, b7, max_pool_3x3_s2(x)}, 1);
}

InceptionEImpl::InceptionEImpl(int64_t in, bool max_pool)
    : max_pool_(max_pool),
      branch1x1(register_module("branch1x1", basic_conv(in, 320, 1))),
      branch3x3_1(register_module("branch3x3_1", basic_conv(in, 384, 1))),
      branch3x3_2a(register_module("branch3x3_2a", basic_conv(384, 384, {1, 3}, {0, 1}))),
      branch3x3_2b(register_module("branch3x3_2b", basic_conv(384, 384, {3, 1}, {1, 0}))),
      branch3x3dbl_1(register_module("branch3x3dbl_1", basic_conv(in, 448, 1))),
      branch3x3dbl_2(register_module("branch3x3dbl_2", basic_conv(448, 384, 3, 1, 1))),
      branch3x3dbl_3a(register_module("branch3x3dbl_3a", basic_conv(384, 384, {1, 3}, {0, 1}))),
      branch3x3dbl_3b(register_module("branch3x3dbl_3b", basic_conv(384, 384, {3, 1}, {1, 0}))),
      branch_pool(register_module("branch_pool", basic_conv(in, 192, 1))) {}

at::Tensor InceptionEImpl::forward(const at::Tensor& x) {
  at::Tensor b3 = branch3x3_1(x);
  b3 = at::cat({branch3x3_2a(b3), branch3x3_2b(b3)}, 1);
  at::Tensor bd = branch3x3dbl_2(branch3x3dbl_1(x));
  bd = at::cat({branch3x3dbl_3a(bd), branch3x3dbl_3b(bd)}, 1);
  at::Tensor pooled = max_pool_ ? at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1}) : tf_avg_pool(x);
  return at::cat({branch1x1(x), b3, bd, branch_pool(pooled)}, 1);
}

FIDInceptionV3Impl::FIDInceptionV3Impl()
    : Conv2d_1a_3x3(register_module("Conv2d_1a_3x3", basic_conv(3, 32, 3, 2))),
      Conv2d_2a_3x3(register_module("Conv2d_2a_3x3", basic_conv(32, 32, 3))),
      Conv2d_2b_3x3(register_module("Conv2d_2b_3x3", basic_conv(32, 64, 3, 1, 1))),
      Conv2d_3b_1x1(register_module("Conv2d_3b_1x1", basic_conv(64, 80, 1))),
      Conv2d_4a_3x3(register_module("Conv2d_4a_3x3", basic_conv(80, 192, 3))),
      Mixed_5b(register_module("Mixed_5b", InceptionA(192, 32))),
      Mixed_5c(register_module("Mixed_5c", InceptionA(256, 64))),
      Mixed_5d(register_module("Mixed_5d", InceptionA(288, 64))),
      Mixed_6a(register_module("Mixed_6a", InceptionB(288))),
      Mixed_6b(register_module("Mixed_6b", InceptionC(768, 128))),
      Mixed_6c(register_module("Mixed_6c", InceptionC(768, 160))),
      Mixed_6d(register_module("Mixed_6d", InceptionC(768, 160))),
      Mixed_6e(register_module("Mixed_6e", InceptionC(768, 192))),
      Mixed_7a(register_module("Mixed_7a", InceptionD(768))),
      Mixed_7b(register_module("Mixed_7b", InceptionE(1280, /*max_pool=*/false))),
      Mixed_7c(register_module("Mixed_7c", InceptionE(2048, /*max_pool=*/true))),
      fc(register_module("fc", torch::nn::Linear(2048, 1008))) {}

InceptionOutputs FIDInceptionV3Impl::forward(const at::Tensor& x) {
  return forward_normalized(inception_preprocess(x));
}

InceptionOutputs FIDInceptionV3Impl::forward_normalized(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "FIDInceptionV3 expects [N, 3, H, W], got ",
              x.sizes());
  // [N, 3, 299, 299] -> [N, 64, 73, 73] -> [N, 192, 35, 35]
  at::Tensor h = max_pool_3x3_s2(Conv2d_2b_3x3(Conv2d_2a_3x3(Conv2d_1a_3x3(x))));
  h = max_pool_3x3_s2(Conv2d_4a_3x3(Conv2d_3b_1x1(h)));
  // -> [N, 288, 35, 35] -> [N, 768, 17, 17]
  h = Mixed_5d(Mixed_5c(Mixed_5b(h)));
  h = Mixed_6e(Mixed_6d(Mixed_6c(Mixed_6b(Mixed_6a(h)))));
  // -> [N, 2048, 8, 8] -> [N, 2048]
  h = Mixed_7c(Mixed_7b(Mixed_7a(h)));
  InceptionOutputs out;
  out.pool = h.mean({2, 3});
  out.logits = fc(out.pool);
  return out;
}

at::Tensor inception_resize(const at::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == 3,
              "FIDInceptionV3 expects images [N, 3, H, W], got ", images.sizes());
  return F::interpolate(images, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{299, 299})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

at::Tensor inception_preprocess(const at::Tensor& images01) {
  return inception_resize(images01) * 2 - 1;
}

FIDInceptionV3 load_fid_inception(const std::string& path, const c10::Device& device) {
  const std::string where = str("`inception_path` ", path);
  IDIFF_REQUIRE(!path.empty(), FileError,
                "`inception_path` is required: the FID Inception weights of pytorch-fid, ",
                kInceptionWeightsUrl);
  IDIFF_REQUIRE(path_exists(path), FileError, where,
                ": no such file; download pytorch-fid's FID Inception weights from ",
                kInceptionWeightsUrl);
  require_regular_file(path, "`inception_path`");  // a device or FIFO: said as such
  TensorMap sd;
  try {
    sd = load_tensor_file(path);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), " (expected pytorch-fid's FID Inception weights, ",
                        kInceptionWeightsUrl, ")"));
  }
  FIDInceptionV3 net;
  // PyTorch's BatchNorm fills a missing num_batches_tracked in load_state_dict; so do we
  // (files written before PyTorch 0.4.1 have none; the value is unused in eval mode).
  for (const auto& [name, t] : state_dict(*net)) {
    const std::string suffix = "num_batches_tracked";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        !sd.contains(name)) {
      sd.insert(name, at::zeros({}, at::kLong));
    }
  }
  try {
    load_state_dict(*net, sd, path);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), " (expected pytorch-fid's FID Inception weights, ",
                        kInceptionWeightsUrl, ")"));
  }
  net->to(device);
  net->eval();
  return net;
}

}  // namespace idiff
