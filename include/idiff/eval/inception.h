// The Inception network of FID (pytorch-fid's FIDInceptionV3, inception.py): the
// TensorFlow Inception of 2015-12-05 that FID, IS and guided-diffusion's evaluator were
// defined with, ported to PyTorch. It is torchvision's Inception3 with a 1008-class head,
// no auxiliary classifier, and four patched blocks:
//   Mixed_5b..5d (InceptionA), Mixed_6b..6e (InceptionC), Mixed_7b (InceptionE_1): the
//     branch_pool average pool does not count the zero padding (TensorFlow's behaviour);
//   Mixed_7c (InceptionE_2): the branch_pool is a max pool, not an average pool.
// Modules are registered under the reference's names (Conv2d_1a_3x3.conv.weight,
// Mixed_6b.branch7x7dbl_3.bn.running_var, fc.weight, ...), so pytorch-fid's weights file
// (pt_inception-2015-12-05-6726825d.pth) loads name for name.
//
// Input: images in [0, 1], [N, 3, H, W]; they are resized to 299x299 (bilinear,
// align_corners=False, as pytorch-fid's F.interpolate) and mapped to [-1, 1].
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <array>
#include <string>

namespace idiff {

// Where the weights come from, for error messages and --help.
extern const char* const kInceptionWeightsUrl;

// torchvision's BasicConv2d: conv (no bias), batch norm (eps 0.001), ReLU.
class BasicConv2dImpl : public torch::nn::Module {
 public:
  BasicConv2dImpl(int64_t in, int64_t out, torch::ExpandingArray<2> kernel,
                  torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> padding = 0);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(BasicConv2d);

// BasicConv2d(in, out, k x k, stride, padding), and the 1x7 / 7x1 kinds (stride 1):
// TORCH_MODULE's forwarding constructor cannot take braced lists.
BasicConv2d basic_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                       int64_t padding = 0);
BasicConv2d basic_conv(int64_t in, int64_t out, std::array<int64_t, 2> kernel,
                       std::array<int64_t, 2> padding);

// FIDInceptionA (Mixed_5b, 5c, 5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1.
class InceptionAImpl : public torch::nn::Module {
 public:
  InceptionAImpl(int64_t in, int64_t pool_features);
  at::Tensor forward(const at::Tensor& x);

 private:
  BasicConv2d branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3,
      branch_pool;
};
TORCH_MODULE(InceptionA);

// InceptionB (Mixed_6a, grid reduction): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2.
class InceptionBImpl : public torch::nn::Module {
 public:
  explicit InceptionBImpl(int64_t in);
  at::Tensor forward(const at::Tensor& x);

 private:
  BasicConv2d branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3;
};
TORCH_MODULE(InceptionB);

// FIDInceptionC (Mixed_6b..6e): factorised 7x7 branches, avgpool-1x1.
class InceptionCImpl : public torch::nn::Module {
 public:
  InceptionCImpl(int64_t in, int64_t channels_7x7);
  at::Tensor forward(const at::Tensor& x);

 private:
  BasicConv2d branch1x1, branch7x7_1, branch7x7_2, branch7x7_3, branch7x7dbl_1, branch7x7dbl_2,
      branch7x7dbl_3, branch7x7dbl_4, branch7x7dbl_5, branch_pool;
};
TORCH_MODULE(InceptionC);

// InceptionD (Mixed_7a, grid reduction): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2.
class InceptionDImpl : public torch::nn::Module {
 public:
  explicit InceptionDImpl(int64_t in);
  at::Tensor forward(const at::Tensor& x);

 private:
  BasicConv2d branch3x3_1, branch3x3_2, branch7x7x3_1, branch7x7x3_2, branch7x7x3_3, branch7x7x3_4;
};
TORCH_MODULE(InceptionD);

// FIDInceptionE_1 (Mixed_7b, average pool) and FIDInceptionE_2 (Mixed_7c, max pool).
class InceptionEImpl : public torch::nn::Module {
 public:
  InceptionEImpl(int64_t in, bool max_pool);
  at::Tensor forward(const at::Tensor& x);

 private:
  bool max_pool_;
  BasicConv2d branch1x1, branch3x3_1, branch3x3_2a, branch3x3_2b, branch3x3dbl_1, branch3x3dbl_2,
      branch3x3dbl_3a, branch3x3dbl_3b, branch_pool;
};
TORCH_MODULE(InceptionE);

struct InceptionOutputs {
  at::Tensor pool;    // [N, 2048] final average pool (pool_3), FID's features
  at::Tensor logits;  // [N, 1008] fc(pool), the classifier IS uses (softmax of these)
};

class FIDInceptionV3Impl : public torch::nn::Module {
 public:
  FIDInceptionV3Impl();
  // x: [N, 3, H, W] in [0, 1], any H and W (resized to 299x299 here).
  InceptionOutputs forward(const at::Tensor& x);
  // The network proper on an already resized and normalised [N, 3, 299, 299] input.
  InceptionOutputs forward_normalized(const at::Tensor& x);

 private:
  BasicConv2d Conv2d_1a_3x3, Conv2d_2a_3x3, Conv2d_2b_3x3, Conv2d_3b_1x1, Conv2d_4a_3x3;
  InceptionA Mixed_5b, Mixed_5c, Mixed_5d;
  InceptionB Mixed_6a;
  InceptionC Mixed_6b, Mixed_6c, Mixed_6d, Mixed_6e;
  InceptionD Mixed_7a;
  InceptionE Mixed_7b, Mixed_7c;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(FIDInceptionV3);

// [N, 3, H, W] -> [N, 3, 299, 299], bilinear, align_corners=False (F.interpolate).
at::Tensor inception_resize(const at::Tensor& images);
// [N, 3, H, W] in [0, 1] -> [N, 3, 299, 299] in [-1, 1], as pytorch-fid's InceptionV3.
at::Tensor inception_preprocess(const at::Tensor& images01);

// Builds the network, loads pytorch-fid's weights from `path` (.pt/.pth, read with
// idiff's own restricted reader), moves it to `device` in eval mode. A missing file, a
// file of another kind, or a state dict with missing/unexpected/mis-shaped keys is one
// FileError naming the file and where the weights come from.
FIDInceptionV3 load_fid_inception(const std::string& path, const c10::Device& device);

}  // namespace idiff
