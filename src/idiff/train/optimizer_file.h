// opt%06d.pt: the AdamW state in the layout of torch.optim.AdamW.state_dict(), so the
// reference and idiff resume from each other's optimizer files:
//   {"state": {i: {"step": tensor(float32), "exp_avg": T, "exp_avg_sq": T}},
//    "param_groups": [{"lr", "betas", "eps", "weight_decay", "amsgrad", ..., "params": [0..n-1]}]}
// Training in fp16 keeps one flat master tensor (as the reference does), so its file has
// one entry; loading converts between the flat and per-parameter layouts when needed.
#pragma once

#include "idiff/train/adamw.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace idiff {

void save_optimizer_file(const std::string& path, const AdamW& opt);

// Loads the moments and step counts into `opt`. `param_shapes` are the model's parameter
// shapes (to split or join a flat fp16 state). The learning rate and other
// hyper-parameters stay those of `opt` (the command line's). FileError when the file does
// not hold an AdamW state of this model.
void load_optimizer_file(const std::string& path, AdamW& opt,
                         const std::vector<std::vector<int64_t>>& param_shapes);

}  // namespace idiff
