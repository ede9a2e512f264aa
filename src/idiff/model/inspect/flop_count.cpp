#include "idiff/model/inspect/flop_count.h"

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <variant>

namespace idiff {
namespace {

struct Size {
  int64_t h, w;
};

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

// A 2-D convolution on an input of `in`: adds its FLOPs, returns the output size.
Size count_conv2d(const torch::nn::Conv2dImpl& conv, Size in, FlopCount& f) {
  const auto& o = conv.options;
  const auto* pad = std::get_if<torch::ExpandingArray<2>>(&o.padding());
  TORCH_CHECK(pad != nullptr, "count_flops: string padding is not supported");
  const Size out{
      conv_out(in.h, (*o.kernel_size())[0], (*o.stride())[0], (**pad)[0], (*o.dilation())[0]),
      conv_out(in.w, (*o.kernel_size())[1], (*o.stride())[1], (**pad)[1], (*o.dilation())[1])};
  const double macs = static_cast<double>(o.in_channels() / o.groups()) * o.out_channels() *
                      (*o.kernel_size())[0] * (*o.kernel_size())[1] * out.h * out.w;
  f.conv += 2 * macs;
  return out;
}

// The 1x1 Conv1d layers of attention, over `length` positions.
void count_conv1d(const torch::nn::Conv1dImpl& conv, int64_t length, FlopCount& f) {
  const auto& o = conv.options;
  TORCH_CHECK((*o.kernel_size())[0] == 1 && (*o.stride())[0] == 1,
              "count_flops: only 1x1 Conv1d layers are expected");
  f.conv += 2.0 * (o.in_channels() / o.groups()) * o.out_channels() * length;
}

void count_linear(const torch::nn::LinearImpl& linear, FlopCount& f) {
  f.linear += 2.0 * linear.options.in_features() * linear.options.out_features();
}

// Every Conv2d and Linear inside `m`, at one size.
void count_all_same_size(const torch::nn::Module& m, Size size, FlopCount& f) {
  for (const auto& sub : m.modules(/*include_self=*/false)) {
    if (const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(sub.get())) {
      count_conv2d(*conv, size, f);
    } else if (const auto* lin = dynamic_cast<const torch::nn::LinearImpl*>(sub.get())) {
      count_linear(*lin, f);
    }
  }
}

// One child of a TimestepEmbedSequential; returns the size of its output.
Size count_block(const torch::nn::Module& m, Size size, FlopCount& f) {
  if (const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(&m)) {
    return count_conv2d(*conv, size, f);
  }
  if (const auto* res = dynamic_cast<const ResBlockImpl*>(&m)) {
    // guided-diffusion's up/down ResBlocks resample before their first convolution, so
    // every convolution runs at the output size.
    const Size out = res->options().down ? Size{size.h / 2, size.w / 2}
                     : res->options().up ? Size{size.h * 2, size.w * 2}
                                         : size;
    count_all_same_size(m, out, f);
    return out;
  }
  if (const auto* attn = dynamic_cast<const AttentionBlockImpl*>(&m)) {
    const int64_t t = size.h * size.w;
    for (const auto& sub : m.modules(/*include_self=*/false)) {
      if (const auto* conv = dynamic_cast<const torch::nn::Conv1dImpl*>(sub.get())) {
        count_conv1d(*conv, t, f);
      }
    }
    // [heads, ch, T] x [heads, ch, T] -> [heads, T, T], then [heads, T, T] x [heads, ch, T]:
    // T * T * C multiply-adds each over all heads.
    f.attention += 2 * 2.0 * t * t * attn->channels();
    return size;
  }
  if (dynamic_cast<const DownsampleImpl*>(&m) != nullptr) {
    for (const auto& sub : m.modules(/*include_self=*/false)) {
      if (const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(sub.get())) {
        return count_conv2d(*conv, size, f);
      }
    }
    return {size.h / 2, size.w / 2};  // average pooling
  }
  if (dynamic_cast<const UpsampleImpl*>(&m) != nullptr) {
    const Size up{size.h * 2, size.w * 2};
    for (const auto& sub : m.modules(/*include_self=*/false)) {
      if (const auto* conv = dynamic_cast<const torch::nn::Conv2dImpl*>(sub.get())) {
        return count_conv2d(*conv, up, f);
      }
    }
    return up;
  }
  TORCH_CHECK(false, "count_flops: unexpected block ", m.name());
}

Size count_sequential(const TimestepEmbedSequentialImpl& seq, Size size, FlopCount& f) {
  for (const auto& child : seq.children()) size = count_block(*child, size, f);
  return size;
}

}  // namespace

FlopCount count_forward_flops(const UNetModelImpl& model, int64_t height, int64_t width) {
  FlopCount f;
  for (const auto& item : model.named_children()) {
    if (item.key() == "time_embed") count_all_same_size(*item.value(), {1, 1}, f);
  }
  Size size{height, width};
  std::vector<Size> skips;
  for (const auto& block : model.input_blocks()) {
    size = count_sequential(*block, size, f);
    skips.push_back(size);
  }
  size = count_sequential(*model.middle_block(), size, f);
  for (const auto& block : model.output_blocks()) {
    TORCH_CHECK(!skips.empty() && skips.back().h == size.h, "count_flops: skip size mismatch");
    skips.pop_back();
    size = count_sequential(*block, size, f);
  }
  for (const auto& item : model.named_children()) {
    if (item.key() == "out") count_all_same_size(*item.value(), size, f);
  }
  return f;
}

double training_step_flops(const UNetModelImpl& model, int64_t height, int64_t width,
                           int64_t batch) {
  return 3.0 * count_forward_flops(model, height, width).total() * static_cast<double>(batch);
}

}  // namespace idiff
