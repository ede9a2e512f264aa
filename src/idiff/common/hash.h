// FNV-1a 64: a stable digest of a text, the same on every machine (rank agreement compares
// settings with it; the ADM test fixtures derive their weights' seeds from it).
#pragma once

#include <cstdint>
#include <string>

namespace idiff {

uint64_t fnv1a64(const std::string& text);

}  // namespace idiff
