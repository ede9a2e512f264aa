#include "idiff/drivers/load_model.h"

#include "idiff/common/error.h"
#include "idiff/common/filesystem.h"
#include "idiff/common/strings.h"
#include "idiff/diffusion/factory.h"
#include "idiff/distributed/rank_agreement.h"
#include "idiff/io/atomic_file.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/factory.h"
#include "idiff/model/inspect/infer_config.h"
#include "idiff/model/state_dict.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace idiff {

namespace {

constexpr uint64_t kMaxFlagsFileBytes = 1 << 20;
constexpr const char* kFlagsFile = "flags.json";

}  // namespace

void write_model_flags(const std::string& dir, const ModelConfig& model,
                       const DiffusionConfig& diffusion,
                       const std::vector<std::string>& class_names) {
  nlohmann::json flags = nlohmann::json::object();
  for (const auto& [name, value] : model_and_diffusion_settings(model, diffusion)) {
    flags[name.substr(1, name.size() - 2)] = value;  // "`image_size`" -> image_size
  }
  nlohmann::json j = {{"written_by", "idiff train"}, {"flags", flags}};
  if (!class_names.empty()) j["class_names"] = class_names;
  write_bytes_atomically(dir + "/" + kFlagsFile, j.dump(2) + "\n");
}

namespace {

// The flags.json beside checkpoint `path`, parsed and checked ({"flags": {...}}), or null.
nlohmann::json read_flags_file(const std::string& path, std::string* source) {
  const std::string file = parent_dir(path) + "/" + kFlagsFile;
  if (source != nullptr) *source = file;
  if (!path_exists(file)) return nullptr;
  const std::vector<uint8_t> bytes = read_regular_file(file, kMaxFlagsFileBytes, "the flags file");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw FileError(str(file, ": not a flags file written by idiff train (", e.what(), ")"));
  }
  IDIFF_REQUIRE(j.is_object() && j.contains("flags") && j["flags"].is_object(), FileError, file,
                ": expected {\"flags\": {...}} (written by idiff train)");
  return j;
}

}  // namespace

std::vector<std::string> read_class_names(const std::string& path) {
  std::string file;
  const nlohmann::json j = read_flags_file(path, &file);
  if (j.is_null() || !j.contains("class_names")) return {};
  const nlohmann::json& names = j["class_names"];
  IDIFF_REQUIRE(names.is_array() && names.size() <= static_cast<size_t>(kNumClasses), FileError,
                file, ": class_names must be a list of at most ", kNumClasses, " names");
  std::vector<std::string> out;
  for (const auto& n : names) {
    IDIFF_REQUIRE(n.is_string(), FileError, file, ": class_names holds ", n.dump(), ", not a name");
    out.push_back(n.get<std::string>());
  }
  return out;
}

std::vector<int64_t> parse_classes(const std::string& text, const std::vector<std::string>& names) {
  if (names.empty() || text.empty()) return parse_int_list(text, "`class`");
  std::vector<int64_t> out;
  for (const std::string& item : split(text, ',')) {
    const auto named = std::find(names.begin(), names.end(), item);
    if (named != names.end()) {
      out.push_back(named - names.begin());
      continue;
    }
    const bool numeric =
        !item.empty() && item.find_first_not_of("+-0123456789") == std::string::npos;
    IDIFF_REQUIRE(numeric, ConfigError, "`class`: '", item, "' is not a class of the model (",
                  join(names, ", "), ")");
    const std::vector<int64_t> index = parse_int_list(item, "`class`");
    out.insert(out.end(), index.begin(), index.end());
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> read_model_flags(const std::string& path,
                                                                  std::string* source) {
  std::string file;
  const nlohmann::json j = read_flags_file(path, &file);
  if (source != nullptr) *source = file;
  if (j.is_null()) return {};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : j["flags"].items()) {
    IDIFF_REQUIRE(value.is_string(), FileError, file, ": the value of ", name,
                  " must be a string, got ", value.dump());
    out.emplace_back(name, value.get<std::string>());
  }
  return out;
}

ModelConfig family_model_config(const ModelConfig& model, const DiffusionConfig& diffusion) {
  ModelConfig m = model;
  if (is_karras(diffusion)) m.use_new_attention_order = true;
  return m;
}

namespace {

// consistency_models stores its attention projections as 1x1 Conv2d weights, improved- and
// guided-diffusion as Conv1d ones: a file with attention tells its family. Loading one
// family's weights as the other's would run (the shapes fit) and give wrong images, as the
// attention layouts differ.
void check_family(const TensorMap& sd, bool karras, const std::string& path) {
  const std::optional<bool> cm = has_conv2d_attention(sd);
  IDIFF_REQUIRE(!cm || *cm == karras, FileError, path, ": ",
                *cm ? "a consistency_models checkpoint (1x1 Conv2d attention weights): give "
                      "`training_mode` edm, consistency_distillation or consistency_training"
                    : "an improved-/guided-diffusion checkpoint (Conv1d attention weights), "
                      "not a Karras (EDM or consistency) model: drop `training_mode`");
}

}  // namespace

UNetModel load_model(const ModelConfig& model_config, bool super_res, const std::string& path,
                     c10::Device device, bool karras) {
  ModelConfig config = model_config;
  if (karras) config.use_new_attention_order = true;  // consistency_models' "flash" layout
  IDIFF_REQUIRE(!(config.use_fp16 && config.use_bf16), ConfigError,
                "`use_fp16` and `use_bf16` each choose the torso's precision: give one");
  const TensorMap sd = load_tensor_file(path);  // a bad file fails before the model is built
  check_family(sd, karras, path);
  const auto looks_like = [&sd] {
    try {
      const InferredModel inferred = infer_model_config(sd);
      if (inferred.is_unet) return "; the checkpoint looks like: " + inferred.flags;
    } catch (const Error&) {
    }
    return std::string();
  };
  // Before the model is built (flags such as --num_channels 16384 would make it huge): the
  // first convolution's width must be the flags'.
  if (const at::Tensor* first = sd.find("input_blocks.0.0.weight"); first && first->dim() >= 1) {
    IDIFF_REQUIRE(first->size(0) == config.num_channels, FileError, path,
                  ": its first convolution has ", first->size(0),
                  " channels where `num_channels` is ", config.num_channels, looks_like());
  }
  UNetModel model = super_res ? sr_create_model(config) : create_model(config);
  try {
    load_state_dict(*model, sd, path);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), looks_like()));
  }
  model->to(device);
  if (config.use_fp16) model->convert_torso(at::kHalf);
  if (config.use_bf16) model->convert_torso(at::kBFloat16);
  model->eval();
  return model;
}

EncoderUNetModel load_classifier(const ClassifierConfig& config, int64_t image_size,
                                 int64_t image_channels, const std::string& path,
                                 c10::Device device) {
  const TensorMap sd = load_tensor_file(path);
  const InferredClassifier inferred = infer_classifier_config(sd);
  EncoderUNetModel classifier = create_classifier(
      config, image_size, image_channels,
      inferred.is_classifier && inferred.num_classes > 0 ? inferred.num_classes : kNumClasses);
  try {
    load_state_dict(*classifier, sd, path);
  } catch (const FileError& e) {
    throw FileError(str(e.what(), " (a classifier for `image_size` ", image_size,
                        " with these `classifier_*` flags was expected)"));
  }
  classifier->to(device);
  if (config.classifier_use_fp16) classifier->convert_to_fp16();
  classifier->eval();
  return classifier;
}

}  // namespace idiff
