// PyTorch .pt files with at::Tensors: state dicts as TensorMap, and any allowed value
// tree (an optimizer's state_dict, say) through PickleValue with tensor_value/to_tensor
// (tensor_convert.h). The format and its safety rules are in pt_archive.h/unpickler.h.
//
//   write_pt("model.pt", state_dict(*model));          // torch.save(model.state_dict())
//   TensorMap sd = read_pt_state_dict("model.pt");     // torch.load(..., weights_only=True)
//   PickleValue opt = read_pt("opt.pt");               // any tree
//   at::Tensor m = to_tensor(opt.at("state").at(0).at("exp_avg"));
#pragma once

#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_convert.h"
#include "idiff/io/tensor_map.h"

#include <string>

namespace idiff {

// The tensors of a .pt file holding a flat dict of str -> tensor (views and shared
// storages kept as in the file, all on the CPU). FileError for anything else.
TensorMap read_pt_state_dict(const std::string& path);

// torch.save(state_dict) of the tensors as a collections.OrderedDict, atomically.
void write_pt(const std::string& path, const TensorMap& state_dict);

}  // namespace idiff
