// Gradient buckets, as PyTorch's DistributedDataParallel forms them: many tensors are
// packed into few flat buffers of one dtype and device, at most a given number of bytes
// each, so that averaging a model's gradients costs a few large collectives instead of
// one small one per parameter.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace idiff {

// Indices into the tensor list; every tensor of a bucket has the same dtype and device.
using Bucket = std::vector<size_t>;

// Groups tensors by (dtype, device) in list order and closes a bucket before it would
// exceed max_bytes; a tensor larger than max_bytes is a bucket of its own. The plan
// depends only on the tensors' dtypes, devices and sizes, so every rank of a run makes
// the same one.
std::vector<Bucket> plan_buckets(const std::vector<at::Tensor>& tensors, int64_t max_bytes);

// The bucket's tensors concatenated into one 1-D buffer: sum of numel elements. A
// bucket of one contiguous tensor gives a view of it (no copy).
at::Tensor flatten_bucket(const std::vector<at::Tensor>& tensors, const Bucket& bucket);

// A buffer of the size flatten_bucket would give, uninitialised (for receiving).
at::Tensor empty_bucket(const std::vector<at::Tensor>& tensors, const Bucket& bucket);

// Copies a flat buffer back into the bucket's tensors (any strides); nothing to do when
// the buffer is a view of the tensor itself.
void unflatten_bucket(const at::Tensor& flat, std::vector<at::Tensor>& tensors,
                      const Bucket& bucket);

}  // namespace idiff
