// Precompiled header for idiff_lib, the idiff program and the tests (CMake
// target_precompile_headers). It only speeds up the build: every file still includes
// the headers it needs itself. Keep it to the torch headers most files use.
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/nn/functional.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
