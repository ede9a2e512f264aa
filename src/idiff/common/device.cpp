#include "idiff/common/device.h"

#include "idiff/common/error.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#ifdef IDIFF_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace idiff {

c10::Device resolve_device(const std::string& spec) {
  const bool have_cuda = torch::cuda::is_available();
  if (spec == "auto") return have_cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    IDIFF_REQUIRE(have_cuda, ConfigError, "`device` ", spec,
                  ": no CUDA device is available here (use `device` cpu or auto)");
    int index = 0;
    if (spec.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(spec.substr(5), &used);
        IDIFF_REQUIRE(used == spec.size() - 5, ConfigError, "bad");
      } catch (const std::exception&) {
        throw ConfigError(str("`device` ", spec, ": expected cuda:N with N a GPU index"));
      }
    }
    const auto count = static_cast<int>(torch::cuda::device_count());
    IDIFF_REQUIRE(index >= 0 && index < count, ConfigError, "`device` ", spec, ": only ", count,
                  " CUDA device(s) are visible");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw ConfigError(str("`device` '", spec, "' is not one of auto, cpu, cuda, cuda:N"));
}

std::string describe_device(const c10::Device& device) {
  if (device.is_cpu()) return str("CPU (", at::get_num_threads(), " threads)");
#ifdef IDIFF_WITH_CUDA
  if (device.is_cuda()) {
    const auto* prop = at::cuda::getDeviceProperties(device.index());
    return str("CUDA:", static_cast<int>(device.index()), " (", prop->name, ")");
  }
#endif
  return device.str();
}

}  // namespace idiff
