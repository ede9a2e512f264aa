#include "test_util.h"

#include "idiff/common/hash.h"

#include <ATen/Context.h>

#include <sys/wait.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace idiff::test {

nlohmann::json load_json(const std::string& name) {
  std::ifstream in(data_path(name));
  return nlohmann::json::parse(in);
}

ModelConfig model_config_from_flags(const nlohmann::json& f) {
  ModelConfig m;
  auto get = [&](const char* k, auto& field) {
    if (f.contains(k)) field = f[k].get<std::decay_t<decltype(field)>>();
  };
  get("image_size", m.image_size);
  get("num_channels", m.num_channels);
  get("num_res_blocks", m.num_res_blocks);
  get("num_heads", m.num_heads);
  get("num_heads_upsample", m.num_heads_upsample);
  get("attention_resolutions", m.attention_resolutions);
  get("dropout", m.dropout);
  get("learn_sigma", m.learn_sigma);
  get("class_cond", m.class_cond);
  get("use_checkpoint", m.use_checkpoint);
  get("use_scale_shift_norm", m.use_scale_shift_norm);
  get("large_size", m.large_size);
  get("small_size", m.small_size);
  get("num_head_channels", m.num_head_channels);
  get("channel_mult", m.channel_mult);
  get("resblock_updown", m.resblock_updown);
  get("use_new_attention_order", m.use_new_attention_order);
  return m;
}

ClassifierConfig classifier_config_from_flags(const nlohmann::json& f) {
  ClassifierConfig c;
  auto get = [&](const char* k, auto& field) {
    if (f.contains(k)) field = f[k].get<std::decay_t<decltype(field)>>();
  };
  get("classifier_use_fp16", c.classifier_use_fp16);
  get("classifier_width", c.classifier_width);
  get("classifier_depth", c.classifier_depth);
  get("classifier_attention_resolutions", c.classifier_attention_resolutions);
  get("classifier_use_scale_shift_norm", c.classifier_use_scale_shift_norm);
  get("classifier_resblock_updown", c.classifier_resblock_updown);
  get("classifier_pool", c.classifier_pool);
  return c;
}

namespace {

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void set_formula_weights(torch::nn::Module& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    at::Tensor& p = item.value();
    const int64_t n = p.numel(), s0 = p.dim() > 0 ? p.size(0) : 1;
    const double scale = 0.5 / std::sqrt(std::max(1.0, static_cast<double>(n) / s0));
    const uint64_t base = fnv1a64(item.key()) ^ seed;
    at::Tensor w = at::empty({n}, at::kFloat);
    float* out = w.data_ptr<float>();
    for (int64_t i = 0; i < n; ++i) {
      const double u = static_cast<double>(splitmix64(base + static_cast<uint64_t>(i)) >> 11) /
                       9007199254740992.0;  // 2^53
      out[i] = static_cast<float>(scale * (2 * u - 1) + 0.01);
    }
    p.copy_(w.view(p.sizes()));
  }
}

DiffusionConfig diffusion_config_from_flags(const nlohmann::json& f) {
  DiffusionConfig d;
  auto get = [&](const char* k, auto& field) {
    if (f.contains(k)) field = f[k].get<std::decay_t<decltype(field)>>();
  };
  get("learn_sigma", d.learn_sigma);
  get("sigma_small", d.sigma_small);
  get("diffusion_steps", d.diffusion_steps);
  get("noise_schedule", d.noise_schedule);
  get("timestep_respacing", d.timestep_respacing);
  get("use_kl", d.use_kl);
  get("predict_xstart", d.predict_xstart);
  get("rescale_timesteps", d.rescale_timesteps);
  get("rescale_learned_sigmas", d.rescale_learned_sigmas);
  return d;
}

ExactFloat32::ExactFloat32()
    : cublas_(at::globalContext().allowTF32CuBLAS()), cudnn_(at::globalContext().allowTF32CuDNN()) {
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
}

ExactFloat32::~ExactFloat32() {
  at::globalContext().setAllowTF32CuBLAS(cublas_);
  at::globalContext().setAllowTF32CuDNN(cudnn_);
}

double rel_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a64 = a.detach().to(at::kCPU).to(at::kDouble);
  const at::Tensor b64 = b.detach().to(at::kCPU).to(at::kDouble);
  const double num = (a64 - b64).norm().item<double>();
  const double den = b64.norm().item<double>();
  if (den == 0.0) return num;
  return num / den;
}

::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double tol) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  const double e = rel_error(a, b);
  if (e <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << e << " > " << tol;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "idiff-test-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

ModelConfig small_unet_config() {
  ModelConfig cfg;
  cfg.image_size = 32;
  cfg.num_channels = 32;
  cfg.num_res_blocks = 1;
  return cfg;
}

void randomize_parameters(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  for (at::Tensor p : params) p.normal_(0, 0.05);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

RunResult run_shell(const std::string& command) {
  TempDir tmp;
  const std::string out = tmp.file("stdout"), err = tmp.file("stderr");
  const std::string full = "(" + command + ") >" + quote(out) + " 2>" + quote(err) + " </dev/null";
  const int status = std::system(full.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

RunResult run_idiff(const std::vector<std::string>& args) {
  std::string cmd = quote(IDIFF_EXE);
  for (const auto& a : args) cmd += " " + quote(a);
  return run_shell(cmd);
}

std::vector<std::string> fixture_flags(const std::string& name) {
  return json_flags(load_json(name + ".json")["flags"]);
}

std::vector<std::string> json_flags(const nlohmann::json& flags) {
  std::vector<std::string> out;
  for (auto it = flags.begin(); it != flags.end(); ++it) {
    out.push_back("--" + it.key());
    const auto& v = it.value();
    if (v.is_boolean()) {
      out.push_back(v.get<bool>() ? "True" : "False");
    } else if (v.is_string()) {
      out.push_back(v.get<std::string>());
    } else {
      out.push_back(v.dump());
    }
  }
  return out;
}

}  // namespace idiff::test
