#include "idiff/model/state_dict.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include <sstream>

namespace idiff {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// "a, b, c" with at most `limit` items and a count of the rest.
std::string join_limited(const std::vector<std::string>& items, size_t limit = 5) {
  std::ostringstream os;
  for (size_t i = 0; i < items.size() && i < limit; ++i) os << (i ? ", " : "") << items[i];
  if (items.size() > limit) os << " and " << items.size() - limit << " more";
  return os.str();
}

}  // namespace

TensorMap state_dict(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/true)) {
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      out.insert(prefix + p.key(), p.value());
    }
    for (const auto& b : item.value()->named_buffers(/*recurse=*/false)) {
      out.insert(prefix + b.key(), b.value());
    }
  }
  return out;
}

bool loads_into(at::IntArrayRef file, at::IntArrayRef model) {
  return file == model || (model.size() == 3 && model[2] == 1 && file.size() == 4 && file[2] == 1 &&
                           file[3] == 1 && file[0] == model[0] && file[1] == model[1]);
}

namespace {

bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TensorMap with_conv2d_attention(const TensorMap& sd) {
  TensorMap out;
  for (const auto& [name, t] : sd) {
    const bool attention = ends_with(name, ".qkv.weight") || ends_with(name, ".proj_out.weight");
    out.insert(name, attention && t.dim() == 3 && t.size(2) == 1 ? t.unsqueeze(3) : t);
  }
  return out;
}

std::optional<bool> has_conv2d_attention(const TensorMap& sd) {
  for (const auto& [name, t] : sd) {
    if (ends_with(name, ".qkv.weight")) return t.dim() == 4;
  }
  return std::nullopt;
}

void load_state_dict(torch::nn::Module& module, const TensorMap& sd, const std::string& source) {
  const TensorMap own = state_dict(module);
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, t] : own) {
    const at::Tensor* src = sd.find(name);
    if (!src) {
      missing.push_back(name);
    } else if (!loads_into(src->sizes(), t.sizes())) {
      mismatched.push_back(name + " (file " + shape_str(src->sizes()) + ", model " +
                           shape_str(t.sizes()) + ")");
    }
  }
  for (const auto& [name, t] : sd) {
    if (!own.contains(name)) unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::ostringstream os;
    os << source << ": the checkpoint does not match the model;";
    if (!missing.empty())
      os << " missing keys (" << missing.size() << "): " << join_limited(missing) << ";";
    if (!unexpected.empty())
      os << " unexpected keys (" << unexpected.size() << "): " << join_limited(unexpected) << ";";
    if (!mismatched.empty())
      os << " mis-shaped keys (" << mismatched.size() << "): " << join_limited(mismatched) << ";";
    os << " check the model flags (idiff info " << source << " suggests them)";
    throw FileError(os.str());
  }
  // Weights that would load "fine" and then give garbage: a non-float tensor (copy_ casts
  // booleans and integers without a word) or NaN/inf values.
  std::vector<std::string> not_float, not_finite;
  for (const auto& [name, t] : own) {
    const at::Tensor& src = sd.at(name);
    if (t.is_floating_point() && !src.is_floating_point()) {
      not_float.push_back(name + " (" + std::string(c10::toString(src.scalar_type())) + ")");
    } else if (src.is_floating_point() && !at::isfinite(src).all().item<bool>()) {
      not_finite.push_back(name);
    }
  }
  IDIFF_REQUIRE(not_float.empty(), FileError, source, ": weights that are not floating point (",
                not_float.size(), "): ", join_limited(not_float), "; expected float tensors");
  IDIFF_REQUIRE(not_finite.empty(), FileError, source, ": weights holding NaN or infinity (",
                not_finite.size(), "): ", join_limited(not_finite),
                "; the checkpoint is broken (a diverged run?)");
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : own) {
    at::Tensor dst = t;  // shares storage with the module's tensor
    dst.copy_(sd.at(name).view(t.sizes()));
  }
}

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace idiff
