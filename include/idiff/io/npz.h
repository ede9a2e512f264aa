// numpy .npz and .npy files with at::Tensors (format: npy_format.h). The reference's
// sample files are np.savez(path, arr_0, arr_1): uint8 images [N, H, W, 3] and int64
// labels [N]; --base_samples of super-resolution reads them.
#pragma once

#include "idiff/io/tensor_map.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace idiff {

// Arrays by key (without ".npy"), in archive order, on the CPU.
TensorMap read_npz(const std::string& path);
// np.savez (uncompressed), atomically. BF16 tensors are a FileError (numpy has none).
void write_npz(const std::string& path, const TensorMap& arrays);
// The same npz file's bytes (a server's response).
std::string npz_bytes(const TensorMap& arrays);

at::Tensor read_npy(const std::string& path);
void write_npy(const std::string& path, const at::Tensor& array);

}  // namespace idiff
