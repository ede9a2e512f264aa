// Packing tensors into flat buckets (see bucket.h).
#include "idiff/distributed/bucket.h"

#include <ATen/ATen.h>

#include <map>
#include <tuple>

namespace idiff {

std::vector<Bucket> plan_buckets(const std::vector<at::Tensor>& tensors, int64_t max_bytes) {
  TORCH_CHECK(max_bytes > 0, "bucket size must be positive");
  using Key = std::tuple<int, int, int>;           // dtype, device type, device index
  std::map<Key, std::pair<Bucket, int64_t>> open;  // key -> (bucket, bytes)
  std::vector<Bucket> done;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.defined(), "bucket tensor ", i, " is undefined");
    const Key key{static_cast<int>(t.scalar_type()), static_cast<int>(t.device().type()),
                  static_cast<int>(t.device().index())};
    const int64_t bytes = t.numel() * static_cast<int64_t>(t.element_size());
    auto& [bucket, used] = open[key];
    if (!bucket.empty() && used + bytes > max_bytes) {
      done.push_back(std::move(bucket));
      bucket.clear();
      used = 0;
    }
    bucket.push_back(i);
    used += bytes;
  }
  for (auto& [key, entry] : open) {
    if (!entry.first.empty()) done.push_back(std::move(entry.first));
  }
  return done;
}

namespace {

bool is_own_view(const at::Tensor& t) {
  return t.is_contiguous();
}

}  // namespace

at::Tensor flatten_bucket(const std::vector<at::Tensor>& tensors, const Bucket& bucket) {
  if (bucket.size() == 1 && is_own_view(tensors[bucket[0]])) return tensors[bucket[0]].view(-1);
  std::vector<at::Tensor> parts;
  parts.reserve(bucket.size());
  for (size_t i : bucket) parts.push_back(tensors[i].reshape(-1));
  return at::cat(parts);
}

at::Tensor empty_bucket(const std::vector<at::Tensor>& tensors, const Bucket& bucket) {
  if (bucket.size() == 1 && is_own_view(tensors[bucket[0]])) return tensors[bucket[0]].view(-1);
  int64_t n = 0;
  for (size_t i : bucket) n += tensors[i].numel();
  return at::empty({n}, tensors[bucket[0]].options());
}

void unflatten_bucket(const at::Tensor& flat, std::vector<at::Tensor>& tensors,
                      const Bucket& bucket) {
  int64_t offset = 0;
  for (size_t i : bucket) {
    at::Tensor& t = tensors[i];
    const int64_t n = t.numel();
    at::Tensor part = flat.narrow(0, offset, n);
    offset += n;
    if (part.data_ptr() == t.data_ptr() && t.is_contiguous()) continue;  // already in place
    t.copy_(part.view(t.sizes()));
  }
  TORCH_CHECK(offset == flat.numel(), "flat bucket of ", flat.numel(), " elements, expected ",
              offset);
}

}  // namespace idiff
