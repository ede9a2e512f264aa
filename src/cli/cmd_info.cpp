// `idiff info`: with model flags, builds the model they describe and prints its parameter
// count and layout (a model too large to build: its count only); with a checkpoint path (.pt,
// .safetensors, .npz), lists what the file holds and the model flags its UNet weights imply.
#include "command.h"
#include "flags.h"

#include "idiff/io/pt_file.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/inspect/summary.h"
#include "idiff/model/state_dict.h"

#include <algorithm>
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

// Above this many parameters (4 GB of float32) the model is not built to be described: its
// count comes from estimated_parameter_count and the layout is left out.
constexpr int64_t kMaxBuiltParameters = 1000000000;

void print_model(const InfoArgs& a) {
  const UNetOptions o = unet_options(a.model, a.super_res);
  const int64_t estimate = estimated_parameter_count(a.model, a.super_res);
  const int64_t size = a.super_res ? a.model.large_size : a.model.image_size;
  std::cout << (a.super_res ? "SuperResModel" : "UNetModel") << ": " << size << "x" << size << ", "
            << o.model_channels << " channels, channel_mult ";
  for (size_t i = 0; i < o.channel_mult.size(); ++i)
    std::cout << (i ? "," : "") << o.channel_mult[i];
  std::cout << ", " << o.num_res_blocks << " res blocks, attention at "
            << a.model.attention_resolutions << " (" << o.num_heads << " heads), " << o.out_channels
            << " output channels" << (a.model.learn_sigma ? " (learned sigma)" : "")
            << (o.use_scale_shift_norm ? ", scale-shift norm" : "")
            << (o.num_classes ? ", class-conditional" : "") << "\n";
  if (estimate > kMaxBuiltParameters) {
    std::cout << "parameters: " << with_commas(estimate) << " (" << with_commas(estimate * 4 >> 20)
              << " MiB in float32; counted without building the model, so no layout: idiff "
                 "info lays out models of up to "
              << with_commas(kMaxBuiltParameters) << " parameters)\n";
    return;
  }
  UNetModel model = a.super_res ? sr_create_model(a.model) : create_model(a.model);
  std::cout << "parameters: " << with_commas(parameter_count(*model)) << "\n";
  std::cout << describe_unet(*model, size);
  if (a.keys) {
    for (const auto& [name, t] : state_dict(*model)) {
      std::cout << name << " " << t.sizes() << "\n";
    }
  }
}

void print_inferred(const TensorMap& sd) {
  const InferredModel m = infer_model_config(sd);
  if (!m.is_unet) {
    const InferredClassifier c = infer_classifier_config(sd);
    if (c.is_classifier) {
      std::cout << "EncoderUNetModel (guided-diffusion's noisy-image classifier), "
                << c.config.classifier_pool << " pool\n";
      if (!c.flags.empty()) std::cout << "flags: " << c.flags << "\n";
      for (const auto& note : c.notes) std::cout << "note: " << note << "\n";
      return;
    }
    std::cout << "not a UNet or classifier state dict (no input_blocks.0.0.weight / out.2.weight "
                 "/ time_embed)\n";
    return;
  }
  std::cout << (m.super_res ? "SuperResModel" : "UNetModel") << ", channel_mult ";
  for (size_t i = 0; i < m.channel_mult.size(); ++i)
    std::cout << (i ? "," : "") << m.channel_mult[i];
  std::cout << "\nflags: " << m.flags << "\n";
  for (const auto& note : m.notes) std::cout << "note: " << note << "\n";
}

// The summary first (what the file is, the flags it implies), then one line per tensor.
void print_tensor_map(const std::string& path, TensorFileKind kind, const TensorMap& sd) {
  size_t width = 0;
  int64_t total = 0;
  for (const auto& [name, t] : sd) {
    width = std::max(width, std::min<size_t>(name.size(), 60));
    total += t.numel();
  }
  std::cout << path << ": " << tensor_file_kind_name(kind) << ", " << sd.size() << " tensors, "
            << with_commas(total) << " elements\n";
  print_inferred(sd);
  std::cout << "\ntensors:\n";
  for (const auto& [name, t] : sd) {
    std::cout << name << std::string(width > name.size() ? width - name.size() : 0, ' ') << "  "
              << dtype_name(dtype_of(t.scalar_type(), name)) << " " << t.sizes() << "\n";
  }
}

bool is_scalar(const PickleValue& v) {
  return !v.is_dict() && !v.is_sequence() && !v.is_tensor();
}

// A nested .pt (an optimizer state, a training checkpoint): one line per leaf, keys
// joined with dots; lists of scalars on one line.
void print_tree(const PickleValue& v, const std::string& key, int64_t* tensors, int64_t* elements) {
  const std::string prefix = key.empty() ? "" : key + ".";
  if (v.is_dict()) {
    for (const auto& [k, x] : v.dict_items()) {
      print_tree(x, prefix + (k.kind() == PickleValue::Kind::String ? k.as_string() : k.repr()),
                 tensors, elements);
    }
    if (v.size() == 0) std::cout << key << " = {}\n";
  } else if (v.kind() == PickleValue::Kind::List &&
             !std::all_of(v.items().begin(), v.items().end(), is_scalar)) {
    for (size_t i = 0; i < v.size(); ++i)
      print_tree(v.items()[i], prefix + std::to_string(i), tensors, elements);
    if (v.size() == 0) std::cout << key << " = []\n";
  } else if (v.is_tensor()) {
    const RawTensor& t = v.as_tensor();
    std::cout << key << "  " << dtype_name(t.dtype) << " " << shape_string(t.sizes) << "\n";
    ++*tensors;
    *elements += t.numel();
  } else {
    std::cout << key << " = " << v.repr() << "\n";
  }
}

void print_checkpoint(const InfoArgs& a) {
  const TensorFileKind kind = detect_tensor_file(a.checkpoint);
  if (kind == TensorFileKind::Pt) {
    const PickleValue v = read_pt(a.checkpoint);
    bool flat = v.is_dict();
    if (flat) {
      for (const auto& [k, x] : v.dict_items())
        flat = flat && k.kind() == PickleValue::Kind::String && x.is_tensor();
    }
    if (!flat) {
      int64_t tensors = 0, elements = 0;
      print_tree(v, "", &tensors, &elements);
      std::cout << a.checkpoint << ": PyTorch .pt holding a " << v.kind_name() << ", " << tensors
                << " tensors, " << with_commas(elements) << " elements\n";
      return;
    }
    print_tensor_map(a.checkpoint, kind, tensors_of(v, a.checkpoint));
    return;
  }
  print_tensor_map(a.checkpoint, kind, load_tensor_file(a.checkpoint));
}

void setup(CLI::App& sub) {
  auto a = std::make_shared<InfoArgs>();
  sub.add_option("checkpoint", a->checkpoint,
                 "checkpoint to describe (.pt, .pth, .safetensors, .npz)");
  sub.add_flag("--super_res", a->super_res, "describe the super-resolution model");
  sub.add_flag("--keys", a->keys, "also list every state-dict key and shape");
  add_model_and_diffusion_flags(sub, a->model, a->diffusion);
  Flags f(sub);
  f.add("large_size", a->model.large_size, kImageSideRange, "super-resolution output size");
  f.add("small_size", a->model.small_size, kImageSideRange, "super-resolution input size");
  f.add("use_fp16", a->model.use_fp16, "accepted for guided-diffusion's flags (no effect here)");
  sub.callback([a] {
    if (a->checkpoint.empty()) {
      print_model(*a);
    } else {
      print_checkpoint(*a);
    }
  });
}

const bool registered =
    register_command({"info", "describe a model (from flags) or a checkpoint file", 90, setup});

}  // namespace
}  // namespace idiff::cli
