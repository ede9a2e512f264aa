// Shared helpers of the test suite: fixture paths and loading, tolerance checks, running
// the idiff program. Tolerances are relative L2 errors, ||a - b|| / ||b||, as the
// fixtures' README states them.
#pragma once

#include "idiff/common/error.h"
#include "idiff/config.h"
#include "idiff/io/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace idiff::test {

inline std::string data_path(const std::string& name) {
  return std::string(IDIFF_TEST_DATA_DIR) + "/" + name;
}

inline TensorMap load_fixture(const std::string& name) {
  return read_safetensors(data_path(name));
}

nlohmann::json load_json(const std::string& name);

// Model and diffusion settings from a fixture's "flags" object (missing keys keep the
// reference's defaults).
ModelConfig model_config_from_flags(const nlohmann::json& flags);
DiffusionConfig diffusion_config_from_flags(const nlohmann::json& flags);

// The small UNet of the model tests: 32x32 images, 32 channels, one res block per level
// (the reference's other defaults); tests change fields from there.
ModelConfig small_unet_config();

// N(0, 0.05^2) values in every parameter, the zero-initialised output layers included, so
// that every block contributes to outputs and gradients.
void randomize_parameters(const std::vector<at::Tensor>& params);

// ||a - b|| / ||b|| in double precision (0 when both are zero).
double rel_error(const at::Tensor& a, const at::Tensor& b);

::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double tol);

// The message of the idiff::Error that fn throws, or "<no error>" when it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// A fresh temporary directory, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// The reference flags of a fixture model (its NAME.json) as command-line flags.
std::vector<std::string> fixture_flags(const std::string& name);

// Runs the idiff program with the given arguments (each passed as one shell word).
RunResult run_idiff(const std::vector<std::string>& args);
// Runs a shell command line, capturing stdout and stderr.
RunResult run_shell(const std::string& command);

inline std::string python() {
  return IDIFF_PYTHON;
}

}  // namespace idiff::test

// EXPECT/ASSERT that tensor `a` equals `b` to relative L2 error `tol` (shapes must match);
// more context can be streamed: EXPECT_CLOSE(a, b, 1e-4) << name;
#define EXPECT_CLOSE(a, b, tol) EXPECT_TRUE(::idiff::test::all_close((a), (b), (tol)))
#define ASSERT_CLOSE(a, b, tol) ASSERT_TRUE(::idiff::test::all_close((a), (b), (tol)))
