// `idiff info`: with model flags, builds the model they describe and prints its parameter
// count and layout; with a checkpoint path, lists what the file holds.
#include "command.h"
#include "flags.h"

#include "idiff/io/safetensors.h"
#include "idiff/model/factory.h"
#include "idiff/model/state_dict.h"
#include "idiff/model/summary.h"

#include <iostream>

namespace idiff::cli {
namespace {

struct InfoArgs {
  ModelConfig model;
  DiffusionConfig diffusion;
  std::string checkpoint;
  bool super_res = false;
  bool keys = false;
};

void print_model(const InfoArgs& a) {
  UNetModel model = a.super_res ? sr_create_model(a.model) : create_model(a.model);
  const UNetOptions& o = model->options();
  const int64_t size = a.super_res ? a.model.large_size : a.model.image_size;
  std::cout << (a.super_res ? "SuperResModel" : "UNetModel") << ": " << size << "x" << size
            << ", " << o.model_channels << " channels, channel_mult ";
  for (size_t i = 0; i < o.channel_mult.size(); ++i) std::cout << (i ? "," : "") << o.channel_mult[i];
  std::cout << ", " << o.num_res_blocks << " res blocks, attention at "
            << a.model.attention_resolutions << " (" << o.num_heads << " heads), " << o.out_channels
            << " output channels" << (a.model.learn_sigma ? " (learned sigma)" : "")
            << (o.use_scale_shift_norm ? ", scale-shift norm" : "")
            << (o.num_classes ? ", class-conditional" : "") << "\n";
  std::cout << "parameters: " << with_commas(parameter_count(*model)) << "\n";
  std::cout << describe_unet(*model, size);
  if (a.keys) {
    for (const auto& [name, t] : state_dict(*model)) {
      std::cout << name << " " << t.sizes() << "\n";
    }
  }
}

void print_checkpoint(const InfoArgs& a) {
  const TensorMap sd = read_safetensors(a.checkpoint);
  int64_t total = 0;
  for (const auto& [name, t] : sd) {
    std::cout << name << " " << t.sizes() << " " << t.scalar_type() << "\n";
    total += t.numel();
  }
  std::cout << sd.size() << " tensors, " << with_commas(total) << " elements\n";
}

void setup(CLI::App& sub) {
  auto a = std::make_shared<InfoArgs>();
  sub.add_option("checkpoint", a->checkpoint, "checkpoint to describe (.safetensors)");
  sub.add_flag("--super_res", a->super_res, "describe the super-resolution model");
  sub.add_flag("--keys", a->keys, "also list every state-dict key and shape");
  add_model_and_diffusion_flags(sub, a->model, a->diffusion);
  sub.add_option("--large_size", a->model.large_size, "super-resolution output size")
      ->capture_default_str();
  sub.add_option("--small_size", a->model.small_size, "super-resolution input size")
      ->capture_default_str();
  sub.callback([a] {
    if (a->checkpoint.empty()) {
      print_model(*a);
    } else {
      print_checkpoint(*a);
    }
  });
}

const bool registered = register_command(
    {"info", "describe a model (from flags) or a checkpoint file", 90, setup});

}  // namespace
}  // namespace idiff::cli
