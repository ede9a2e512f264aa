// Dataset::get, the one-item convenience over read().
#include "idiff/data/dataset.h"

#include <ATen/ATen.h>

namespace idiff {

Example Dataset::get(int64_t index) const {
  const int64_t r = resolution();
  Example ex;
  ex.image = at::empty({3, r, r}, at::kFloat);
  ex.label = read(index, ex.image.data_ptr<float>());
  return ex;
}

}  // namespace idiff
