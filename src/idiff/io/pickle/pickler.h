// Writes a PickleValue as a protocol-2 pickle in the form torch.save gives it, using only
// globals that torch.load(weights_only=True) accepts: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 and the torch.*Storage classes. (LibTorch's own
// torch::pickle_save writes a type-tagging global that weights_only refuses.)
#pragma once

#include "idiff/io/pickle/pickle_value.h"

#include <memory>
#include <string>
#include <vector>

namespace idiff {

// A storage the pickle refers to by key; the .pt writer stores it as record data/<key>.
struct PickledStorage {
  std::string key;
  std::shared_ptr<const RawStorage> storage;
};

struct Pickled {
  std::string bytes;                     // the data.pkl record
  std::vector<PickledStorage> storages;  // in key order "0", "1", ...
};

// Tensors viewing the same memory (same data pointer and size) share one storage, as
// torch.save does. Throws FileError for trees deeper than kMaxPickleDepth, dict keys
// other than str/int, and tensors whose view does not fit their storage.
Pickled pickle(const PickleValue& value);

}  // namespace idiff
