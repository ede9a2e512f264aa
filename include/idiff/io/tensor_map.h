// An ordered list of named tensors: the in-memory form of a state dict or of any tensor
// file (safetensors, .pt, npz). Order is kept because state dicts are ordered and users
// read `idiff info` listings in file order.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace idiff {

class TensorMap {
 public:
  using Entry = std::pair<std::string, at::Tensor>;

  void insert(std::string name, at::Tensor t);  // replaces an existing entry of that name
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  // The tensor of that name; throws idiff::Error naming `what` (a file) when absent.
  const at::Tensor& at(const std::string& name, const std::string& what = "tensor map") const;
  const at::Tensor* find(const std::string& name) const;

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

}  // namespace idiff
