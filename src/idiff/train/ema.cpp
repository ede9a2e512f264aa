#include "idiff/train/ema.h"

#include <ATen/ATen.h>

namespace idiff {

void update_ema(const std::vector<at::Tensor>& targets, const std::vector<at::Tensor>& sources,
                double rate) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(targets.size() == sources.size(), "update_ema: ", targets.size(), " targets vs ",
              sources.size(), " sources");
  std::vector<at::Tensor> src;
  src.reserve(sources.size());
  for (const auto& s : sources) src.push_back(s.detach());
  at::_foreach_mul_(targets, rate);
  at::_foreach_add_(targets, src, 1 - rate);
}

std::vector<at::Tensor> clone_tensors(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back(t.detach().clone(at::MemoryFormat::Contiguous));
  return out;
}

}  // namespace idiff
