#include "idiff/train/train_checkpoint.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/strings.h"
#include "idiff/distributed/data_parallel.h"
#include "idiff/distributed/dist_context.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/state_dict.h"
#include "idiff/train/fp16_util.h"
#include "idiff/train/optimizer_file.h"
#include "idiff/train/train_loop.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace idiff {
namespace {

bool all_finite(const std::vector<at::Tensor>& tensors) {
  at::NoGradGuard no_grad;
  for (const at::Tensor& t : tensors) {
    if (!at::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

std::vector<at::Tensor> buffers_of(const UNetModel& model) {
  std::vector<at::Tensor> out;
  for (const auto& b : model->buffers()) out.push_back(b);
  return out;
}

}  // namespace

std::string step_checkpoint_name(const std::string& prefix, int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s%06lld.pt", prefix.c_str(), static_cast<long long>(step));
  return buf;
}

std::string python_float_repr(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  // Python writes integral floats with ".0" and exponents with two digits at least.
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

int64_t parse_resume_step_from_filename(const std::string& filename) {
  const auto pos = filename.rfind("model");
  if (pos == std::string::npos) return 0;
  const std::string rest = filename.substr(pos + 5);
  const std::string digits = rest.substr(0, rest.find('.'));
  if (digits.empty()) return 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
  }
  // A step beyond kMaxSteps would overflow the batch plan and the step counters.
  return parse_int(digits, str("`resume_checkpoint` ", filename, ": the step number in its name"),
                   0, kMaxSteps);
}

std::string ema_checkpoint_name(double rate, int64_t step) {
  return step_checkpoint_name("ema_" + python_float_repr(rate) + "_", step);
}

// Only rank 0 reads the checkpoint files (as the reference's dist_util.load_state_dict);
// the other ranks receive the values, so they need no access to them.
void TrainLoop::load_and_sync_parameters() {
  const std::string& resume = config_.resume_checkpoint;
  if (!resume.empty()) {
    resume_step_ = parse_resume_step_from_filename(resume);
    if (dist_->is_main()) {
      logger_.log("loading model from checkpoint: " + resume + "...");
      load_state_dict(*model_, load_tensor_file(resume), resume);
    }
  }
  sync_params(*dist_, model_params_);
  sync_params(*dist_, buffers_of(model_));
}

void TrainLoop::load_ema(double rate, std::vector<at::Tensor>& ema) {
  const std::string& resume = config_.resume_checkpoint;
  if (resume.empty() || !dist_->is_main()) return;
  const std::string path = parent_dir(resume) + "/" + ema_checkpoint_name(rate, resume_step_);
  if (!path_exists(path)) {
    logger_.warn("no EMA checkpoint " + path + ": EMA " + python_float_repr(rate) +
                 " restarts from the model weights");
    return;
  }
  logger_.log("loading EMA from checkpoint: " + path + "...");
  const TensorMap sd = load_tensor_file(path);
  std::vector<at::Tensor> loaded;
  for (const auto& item : model_->named_parameters()) {
    const at::Tensor& t = sd.at(item.key(), path);
    IDIFF_REQUIRE(t.is_floating_point() && at::isfinite(t).all().item<bool>(), FileError, path,
                  ": ", item.key(),
                  t.is_floating_point() ? " holds NaN or infinity" : " is not floating point",
                  "; the EMA checkpoint is broken");
    IDIFF_REQUIRE(loads_into(t.sizes(), item.value().sizes()), FileError, path, ": ", item.key(),
                  " has shape ", t.sizes(), " where the model has ", item.value().sizes(),
                  "; the EMA checkpoint is of another model");
    loaded.push_back(t.reshape(item.value().sizes()).to(device_, at::kFloat));
  }
  ema = fp16_ ? make_master_params(loaded) : loaded;
  for (auto& t : ema) t = t.detach().clone();
}

void TrainLoop::load_and_sync_optimizer() {
  const std::string& resume = config_.resume_checkpoint;
  if (resume.empty()) return;
  const std::string path = parent_dir(resume) + "/" + step_checkpoint_name("opt", resume_step_);
  int64_t loaded = 0;
  if (dist_->is_main()) {
    if (path_exists(path)) {
      logger_.log("loading optimizer state from checkpoint: " + path);
      std::vector<std::vector<int64_t>> shapes;
      for (const auto& p : model_->parameters()) shapes.push_back(p.sizes().vec());
      load_optimizer_file(path, *opt_, shapes);
      loaded = 1;
    } else {
      logger_.warn("no optimizer checkpoint " + path + ": AdamW moments restart from zero");
    }
  }
  if (!dist_->is_distributed()) return;
  // Rank 0 says whether it loaded a state; if so the others make room and receive it.
  std::vector<at::Tensor> flag{at::full({1}, loaded, at::kLong)};
  dist_->broadcast(flag, 0);
  if (flag[0].item<int64_t>() == 0) return;
  // Every parameter gets a state (zeros where rank 0's file had none: what AdamW starts
  // from), so every rank sends and receives the same tensors.
  std::vector<AdamWParamState> state = opt_->state();
  for (size_t i = 0; i < state.size(); ++i) {
    if (state[i].exp_avg.defined()) continue;
    state[i].step = at::zeros({}, at::TensorOptions(at::kFloat));
    state[i].exp_avg = at::zeros_like(master_params_[i], at::MemoryFormat::Contiguous);
    state[i].exp_avg_sq = at::zeros_like(master_params_[i], at::MemoryFormat::Contiguous);
  }
  opt_->set_state(std::move(state));
  std::vector<at::Tensor> tensors;
  for (const auto& st : opt_->state()) {
    tensors.push_back(st.step);
    tensors.push_back(st.exp_avg);
    tensors.push_back(st.exp_avg_sq);
  }
  sync_params(*dist_, tensors);
}

TensorMap TrainLoop::params_to_state_dict(const std::vector<at::Tensor>& params) const {
  std::vector<at::Tensor> unflat = params;
  if (fp16_) unflat = unflatten_master_params(model_params_, params[0]);
  TensorMap sd;
  size_t i = 0;
  for (const auto& item : model_->named_parameters()) {
    sd.insert(item.key(), unflat.at(i++).detach().to(at::kCPU, at::kFloat).contiguous());
  }
  return objective_->file_layout(sd);
}

void TrainLoop::save() {
  IDIFF_REQUIRE(!any_nonfinite_loss(), Error,
                "the loss became non-finite (NaN or inf) before step ", step_,
                dist_->world_size() > 1 ? " (on at least one rank)" : "",
                "; not saving over the last good checkpoint (step ",
                last_saved_step_ < 0 ? std::string("none") : std::to_string(last_saved_step_),
                "). Try a lower `lr`.");
  // Every rank holds the same weights, so every rank comes to the same answer here.
  IDIFF_REQUIRE(
      all_finite(master_params_) && std::all_of(ema_params_.begin(), ema_params_.end(), all_finite),
      Error, "the weights became non-finite (NaN or inf) by step ", step_,
      "; not saving them as a checkpoint (the last good one: step ",
      last_saved_step_ < 0 ? std::string("none") : std::to_string(last_saved_step_),
      "). Try a lower `lr`.");
  if (dist_->is_main()) {
    const std::string dir = logger_.dir();
    logger_.log("saving model " + dir + "/" + step_checkpoint_name("model", step_) + "...");
    save_tensor_file(dir + "/" + step_checkpoint_name("model", step_),
                     params_to_state_dict(master_params_));
    for (size_t i = 0; i < ema_rates_.size(); ++i) {
      save_tensor_file(dir + "/" + ema_checkpoint_name(ema_rates_[i], step_),
                       params_to_state_dict(ema_params_[i]));
    }
    save_optimizer_file(dir + "/" + step_checkpoint_name("opt", step_), *opt_);
    for (const auto& [prefix, sd] : objective_->checkpoint_files()) {
      save_tensor_file(dir + "/" + step_checkpoint_name(prefix, step_), sd);
    }
  }
  // No rank runs ahead of a checkpoint: when any returns, the files are complete.
  dist_->barrier();
  last_saved_step_ = step_;
}

}  // namespace idiff
