// torch.save files (the zip format of PyTorch 1.6 and newer; reference:
// torch/serialization.py) as PickleValue trees, without LibTorch. An archive holds
// <folder>/data.pkl (the pickle, read by unpickler.h), <folder>/data/<key> (one record per
// storage, raw little-endian bytes), and <folder>/byteorder and <folder>/version. Any
// folder name is accepted on reading; writing uses "archive" and torch.save's layout:
// stored records, data 64-byte aligned.
#pragma once

#include "idiff/io/pickle/pickle_value.h"
#include "idiff/io/zip_archive.h"

#include <string>

namespace idiff {

// The largest data.pkl read (a state dict of 100,000 tensors pickles to about 15 MB).
constexpr uint64_t kMaxPickleBytes = uint64_t{256} << 20;

// Reads the value a torch.save file holds, in the zip format or the legacy one
// (pt_legacy.h). FileError for anything that is not a torch.save file, for pickles outside the
// allowlist (unpickler.h), and for storages whose records are missing or of the wrong size.
PickleValue read_pt(const std::string& path);
PickleValue read_pt(const ZipReader& zip);

// Writes `value` as torch.save would, atomically (atomic_file.h). Loadable with
// torch.load(path) and torch.load(path, weights_only=True).
void write_pt(const std::string& path, const PickleValue& value);

}  // namespace idiff
