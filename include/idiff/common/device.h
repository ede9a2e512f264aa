// Choosing the compute device at run time (--device auto|cpu|cuda|cuda:N).
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace idiff {

// "auto" picks the first GPU when LibTorch sees one, else the CPU. A CUDA device that
// does not exist is a ConfigError naming --device.
c10::Device resolve_device(const std::string& spec);

// "CPU (2 threads)", "CUDA:0 (NVIDIA H200)" for logs.
std::string describe_device(const c10::Device& device);

}  // namespace idiff
