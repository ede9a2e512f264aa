// safetensors reader. The header is parsed with nlohmann-json (ordered, so the listing
// keeps the writer's order) and checked completely before any tensor is allocated, so a
// hostile header cannot make us allocate more than the file holds.
#include "idiff/io/safetensors.h"

#include "idiff/common/error.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies bytes as they are"
#endif

namespace idiff {
namespace {

using json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit (100 MB)

struct Entry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // byte range within the data section
};

struct Header {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

bool dtype_from_name(const std::string& s, at::ScalarType* out) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"F64", at::kDouble}, {"F32", at::kFloat},  {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool}};
  auto it = kTypes.find(s);
  if (it == kTypes.end()) return false;
  *out = it->second;
  return true;
}

Header parse_header(std::ifstream& in, const std::string& path) {
  in.seekg(0, std::ios::end);
  const auto file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  IDIFF_REQUIRE(file_size >= 8, FileError, path, ": not a safetensors file (", file_size,
                " bytes, shorter than the 8-byte header length)");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  IDIFF_REQUIRE(header_len <= kMaxHeaderBytes && header_len <= file_size - 8, FileError, path,
                ": not a safetensors file (declared header of ", header_len, " bytes in a file of ",
                file_size, " bytes)");
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  IDIFF_REQUIRE(in.good(), FileError, path, ": could not read the safetensors header");
  IDIFF_REQUIRE(!text.empty() && text[0] == '{', FileError, path,
                ": not a safetensors file (header does not start with '{')");

  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw FileError(str(path, ": safetensors header is not valid JSON (", e.what(), ")"));
  }
  IDIFF_REQUIRE(j.is_object(), FileError, path, ": safetensors header is not a JSON object");

  Header h;
  h.data_start = 8 + header_len;
  const uint64_t data_size = file_size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      IDIFF_REQUIRE(v.is_object(), FileError, path, ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        IDIFF_REQUIRE(m.value().is_string(), FileError, path, ": __metadata__ value '", m.key(),
                      "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    IDIFF_REQUIRE(v.is_object() && v.contains("dtype") && v.contains("shape") &&
                      v.contains("data_offsets"),
                  FileError, path, ": tensor '", name,
                  "' needs dtype, shape and data_offsets in the header");
    Entry e;
    e.name = name;
    IDIFF_REQUIRE(v["dtype"].is_string() && dtype_from_name(v["dtype"].get<std::string>(), &e.dtype),
                  FileError, path, ": tensor '", name, "' has unsupported dtype ", v["dtype"].dump(),
                  " (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
    IDIFF_REQUIRE(v["shape"].is_array() && v["shape"].size() <= 16, FileError, path, ": tensor '",
                  name, "' has a malformed shape ", v["shape"].dump());
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : v["shape"]) {
      IDIFF_REQUIRE(d.is_number_unsigned(), FileError, path, ": tensor '", name,
                    "' has a malformed shape ", v["shape"].dump());
      const uint64_t n = d.get<uint64_t>();
      if (n > 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / n) overflow = true;
      numel *= n;
      e.shape.push_back(static_cast<int64_t>(n));
    }
    const auto& off = v["data_offsets"];
    IDIFF_REQUIRE(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                      off[1].is_number_unsigned(),
                  FileError, path, ": tensor '", name, "' has malformed data_offsets ", off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    IDIFF_REQUIRE(e.begin <= e.end && e.end <= data_size, FileError, path, ": tensor '", name,
                  "' data_offsets [", e.begin, ", ", e.end, ") lie outside the ", data_size,
                  "-byte data section");
    const uint64_t expected = numel * at::elementSize(e.dtype);
    IDIFF_REQUIRE(!overflow && e.end - e.begin == expected, FileError, path, ": tensor '", name,
                  "' holds ", e.end - e.begin, " bytes but its shape and dtype need ",
                  overflow ? std::string("more than 2^64") : std::to_string(expected));
    h.entries.push_back(std::move(e));
  }

  std::vector<const Entry*> by_offset;
  for (const auto& e : h.entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    IDIFF_REQUIRE(by_offset[i]->begin >= by_offset[i - 1]->end, FileError, path, ": tensors '",
                  by_offset[i - 1]->name, "' and '", by_offset[i]->name, "' overlap");
  }
  return h;
}

std::ifstream open_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  IDIFF_REQUIRE(in.is_open(), FileError, path, ": cannot open (", std::strerror(errno), ")");
  return in;
}

}  // namespace

TensorMap read_safetensors(const std::string& path) {
  std::ifstream in = open_binary(path);
  const Header h = parse_header(in, path);
  TensorMap out;
  for (const auto& e : h.entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    const uint64_t n = e.end - e.begin;
    if (n > 0) {
      in.seekg(static_cast<std::streamoff>(h.data_start + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(n));
      IDIFF_REQUIRE(in.good(), FileError, path, ": could not read tensor '", e.name, "'");
    }
    out.insert(e.name, std::move(t));
  }
  return out;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  std::ifstream in = open_binary(path);
  return parse_header(in, path).metadata;
}

}  // namespace idiff
