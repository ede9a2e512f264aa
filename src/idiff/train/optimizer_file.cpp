#include "idiff/train/optimizer_file.h"

#include "idiff/common/error.h"
#include "idiff/io/pt_archive.h"
#include "idiff/io/tensor_convert.h"

#include <ATen/ATen.h>

namespace idiff {

void save_optimizer_file(const std::string& path, const AdamW& opt) {
  const AdamWOptions& o = opt.options();
  PickleValue state = PickleValue::dict();
  for (size_t i = 0; i < opt.state().size(); ++i) {
    const AdamWParamState& s = opt.state()[i];
    if (!s.exp_avg.defined()) continue;
    PickleValue entry = PickleValue::dict();
    entry.set("step", tensor_value(s.step.detach().to(at::kCPU, at::kFloat)));
    entry.set("exp_avg", tensor_value(s.exp_avg.detach().cpu()));
    entry.set("exp_avg_sq", tensor_value(s.exp_avg_sq.detach().cpu()));
    state.append_item(PickleValue::integer(static_cast<int64_t>(i)), std::move(entry));
  }
  PickleValue group = PickleValue::dict();
  group.set("lr", PickleValue::real(o.lr));
  group.set("betas", PickleValue::tuple({PickleValue::real(o.beta1), PickleValue::real(o.beta2)}));
  group.set("eps", PickleValue::real(o.eps));
  group.set("weight_decay", PickleValue::real(o.weight_decay));
  const bool radam = o.rule == AdamWOptions::Rule::RAdam;
  if (!radam) group.set("amsgrad", PickleValue::boolean(false));
  group.set("foreach", PickleValue::none());
  group.set("maximize", PickleValue::boolean(false));
  group.set("capturable", PickleValue::boolean(false));
  group.set("differentiable", PickleValue::boolean(false));
  if (radam) {
    group.set("decoupled_weight_decay", PickleValue::boolean(false));
  } else {
    group.set("fused", PickleValue::none());
  }
  PickleValue ids = PickleValue::list();
  for (size_t i = 0; i < opt.params().size(); ++i)
    ids.push_back(PickleValue::integer(static_cast<int64_t>(i)));
  group.set("params", std::move(ids));
  PickleValue root = PickleValue::dict();
  root.set("state", std::move(state));
  root.set("param_groups", PickleValue::list({std::move(group)}));
  write_pt(path, root);
}

void load_optimizer_file(const std::string& path, AdamW& opt,
                         const std::vector<std::vector<int64_t>>& param_shapes) {
  const PickleValue root = read_pt(path);
  IDIFF_REQUIRE(root.is_dict() && root.find("state") && root.find("param_groups"), FileError, path,
                ": not an optimizer state (expected a dict with 'state' and 'param_groups')");
  const PickleValue& groups = root.at("param_groups");
  IDIFF_REQUIRE(groups.is_sequence() && groups.size() == 1, FileError, path,
                ": expected one AdamW parameter group, found ", groups.size());
  const int64_t n_file = static_cast<int64_t>(groups.items()[0].at("params").size());

  std::vector<AdamWParamState> file_state(static_cast<size_t>(n_file));
  StorageCache cache;
  for (const auto& [key, value] : root.at("state").dict_items()) {
    const int64_t i = key.as_int();
    IDIFF_REQUIRE(i >= 0 && i < n_file, FileError, path, ": state for parameter ", i,
                  " outside the group's ", n_file, " parameters");
    AdamWParamState& s = file_state[static_cast<size_t>(i)];
    IDIFF_REQUIRE(value.find("exp_avg") && value.find("exp_avg_sq"), FileError, path,
                  ": parameter ", i, " has no exp_avg/exp_avg_sq (not an Adam state)");
    s.exp_avg = to_tensor(value.at("exp_avg"), &cache);
    s.exp_avg_sq = to_tensor(value.at("exp_avg_sq"), &cache);
    const PickleValue* step = value.find("step");
    if (step && step->is_tensor()) {
      s.step = to_tensor(*step, &cache).to(at::kFloat).reshape({});
    } else {
      s.step = at::full({}, step ? step->as_float() : 0.0, at::TensorOptions().dtype(at::kFloat));
    }
  }

  const size_t n_opt = opt.params().size();
  std::vector<AdamWParamState> state;
  if (static_cast<size_t>(n_file) == n_opt) {
    state = std::move(file_state);
  } else if (n_opt == 1 && static_cast<size_t>(n_file) == param_shapes.size()) {
    // Per-parameter file, flat (fp16) optimizer: join.
    std::vector<at::Tensor> m, v;
    for (const auto& s : file_state) {
      IDIFF_REQUIRE(s.exp_avg.defined(), FileError, path, ": incomplete per-parameter state");
      m.push_back(s.exp_avg.reshape({-1}));
      v.push_back(s.exp_avg_sq.reshape({-1}));
    }
    state.push_back({file_state[0].step, at::cat(m), at::cat(v)});
  } else if (n_file == 1 && n_opt == param_shapes.size() && file_state[0].exp_avg.defined()) {
    // Flat (fp16) file, per-parameter optimizer: split.
    int64_t offset = 0;
    for (const auto& shape : param_shapes) {
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      IDIFF_REQUIRE(offset + numel <= file_state[0].exp_avg.numel(), FileError, path,
                    ": the flat optimizer state is smaller than the model");
      state.push_back({file_state[0].step.clone(),
                       file_state[0].exp_avg.narrow(0, offset, numel).view(shape).clone(),
                       file_state[0].exp_avg_sq.narrow(0, offset, numel).view(shape).clone()});
      offset += numel;
    }
  } else {
    throw FileError(str(path, ": the optimizer state has ", n_file, " parameters, this model ",
                        param_shapes.size(), " (was it written for another model?)"));
  }
  // A damaged file is refused here, naming it: NaN moments would otherwise surface steps
  // later as non-finite weights (and a hint to lower --lr that does not apply).
  for (size_t i = 0; i < state.size(); ++i) {
    const AdamWParamState& s = state[i];
    if (!s.exp_avg.defined()) continue;
    IDIFF_REQUIRE(s.exp_avg.numel() == s.exp_avg_sq.numel(), FileError, path, ": parameter ", i,
                  "'s exp_avg has ", s.exp_avg.numel(), " values, its exp_avg_sq ",
                  s.exp_avg_sq.numel());
    IDIFF_REQUIRE(at::isfinite(s.exp_avg).all().item<bool>() &&
                      at::isfinite(s.exp_avg_sq).all().item<bool>() &&
                      (s.exp_avg_sq >= 0).all().item<bool>() &&
                      at::isfinite(s.step).all().item<bool>(),
                  FileError, path, ": parameter ", i,
                  "'s state holds NaN, inf or a negative second moment (a damaged file; resume "
                  "without it by moving it away: AdamW's moments then restart from zero)");
  }
  try {
    opt.set_state(std::move(state));
  } catch (const FileError& e) {
    throw FileError(str(path, ": ", e.what(), " (was it written for another model?)"));
  }
}

}  // namespace idiff
