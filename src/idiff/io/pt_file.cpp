#include "idiff/io/pt_file.h"

namespace idiff {

TensorMap read_pt_state_dict(const std::string& path) {
  return tensors_of(read_pt(path), path);
}

void write_pt(const std::string& path, const TensorMap& state_dict) {
  write_pt(path, state_dict_value(state_dict));
}

}  // namespace idiff
