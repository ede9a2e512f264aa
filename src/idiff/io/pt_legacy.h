// torch.save's format before PyTorch 1.6 (and with _use_new_zipfile_serialization=False;
// reference: torch/serialization.py, _legacy_save / _legacy_load): pickles back to back,
//   magic number (the long 0x1950a86a20f9469cfc6c), protocol version (1001), sys_info
//   (a dict: little_endian, type sizes), the value (storages as persistent ids
//   ('storage', type, key, location, numel, None)), the list of storage keys,
// then for each key in that list an int64 element count and the storage's raw bytes.
// Read with the same restricted unpickler as the zip format (unpickler.h): nothing is run.
// Files written with a pickle protocol other than 2 (torch.save's default) are refused.
#pragma once

#include "idiff/io/pickle/pickle_value.h"

#include <string>

namespace idiff {

// FileError naming the file for anything that is not this layout, a storage whose size
// disagrees with its pickle, missing or extra storages, and trailing bytes.
PickleValue read_legacy_pt(const std::string& path);

}  // namespace idiff
