#include "idiff/io/tensor_map.h"

#include "idiff/common/error.h"

namespace idiff {

void TensorMap::insert(std::string name, at::Tensor t) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(t);
    return;
  }
  index_.emplace(name, entries_.size());
  entries_.emplace_back(std::move(name), std::move(t));
}

const at::Tensor* TensorMap::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const at::Tensor& TensorMap::at(const std::string& name, const std::string& what) const {
  const at::Tensor* t = find(name);
  IDIFF_REQUIRE(t != nullptr, FileError, what, ": no tensor named '", name, "'");
  return *t;
}

}  // namespace idiff
