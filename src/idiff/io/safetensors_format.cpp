// The header is parsed with nlohmann-json (ordered, so listings keep the writer's order)
// and checked completely before any tensor is allocated, so a hostile header cannot make
// us allocate more than the file holds.
#include "idiff/io/safetensors_format.h"

#include "idiff/common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace idiff {
namespace {

using json = nlohmann::ordered_json;

constexpr uint64_t kMaxDim = uint64_t{1} << 62;
constexpr size_t kMaxRank = 64;

SafetensorsEntry parse_entry(const std::string& name, const json& v, uint64_t data_size,
                             const std::string& path) {
  IDIFF_REQUIRE(
      v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
      FileError, path, ": tensor '", name, "' needs dtype, shape and data_offsets in the header");
  SafetensorsEntry e;
  e.name = name;
  IDIFF_REQUIRE(v["dtype"].is_string() && dtype_from_name(v["dtype"].get<std::string>(), &e.dtype),
                FileError, path, ": tensor '", name, "' has unsupported dtype ",
                v["dtype"].dump().substr(0, 40),
                " (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
  const json& shape = v["shape"];
  IDIFF_REQUIRE(shape.is_array() && shape.size() <= kMaxRank, FileError, path, ": tensor '", name,
                "' has a malformed shape ", shape.dump().substr(0, 80));
  for (const auto& d : shape) {
    IDIFF_REQUIRE(d.is_number_unsigned() && d.get<uint64_t>() <= kMaxDim, FileError, path,
                  ": tensor '", name, "' has a malformed shape ", shape.dump().substr(0, 80));
    e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  const int64_t numel = checked_numel(e.shape);
  IDIFF_REQUIRE(numel >= 0, FileError, path, ": tensor '", name, "' has more than 2^62 elements");
  const json& off = v["data_offsets"];
  IDIFF_REQUIRE(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                    off[1].is_number_unsigned(),
                FileError, path, ": tensor '", name, "' has malformed data_offsets ",
                off.dump().substr(0, 80));
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  IDIFF_REQUIRE(e.begin <= e.end && e.end <= data_size, FileError, path, ": tensor '", name,
                "' data_offsets [", e.begin, ", ", e.end, ") lie outside the ", data_size,
                "-byte data section");
  const uint64_t expected = static_cast<uint64_t>(numel) * dtype_size(e.dtype);
  IDIFF_REQUIRE(e.end - e.begin == expected, FileError, path, ": tensor '", name, "' holds ",
                e.end - e.begin, " bytes but its shape ", shape_string(e.shape), " and dtype ",
                dtype_name(e.dtype), " need ", expected);
  return e;
}

}  // namespace

SafetensorsHeader read_safetensors_header(std::istream& in, uint64_t file_size,
                                          const std::string& path) {
  IDIFF_REQUIRE(file_size >= 8, FileError, path, ": not a safetensors file (", file_size,
                " bytes, shorter than the 8-byte header length)");
  in.seekg(0);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  IDIFF_REQUIRE(in.good(), FileError, path, ": could not read the safetensors header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  IDIFF_REQUIRE(header_len <= kMaxSafetensorsHeader && header_len <= file_size - 8, FileError, path,
                ": not a safetensors file (declared header of ", header_len, " bytes in a file of ",
                file_size, " bytes)");
  std::string text(static_cast<size_t>(header_len), '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  IDIFF_REQUIRE(in.good(), FileError, path, ": could not read the safetensors header");
  IDIFF_REQUIRE(!text.empty() && text[0] == '{', FileError, path,
                ": not a safetensors file (header does not start with '{')");

  // Duplicate names would silently replace each other in the parsed object.
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, on_event);
  } catch (const std::exception& e) {
    throw FileError(str(path, ": safetensors header is not valid JSON (", e.what(), ")"));
  }
  IDIFF_REQUIRE(j.is_object(), FileError, path, ": safetensors header is not a JSON object");
  IDIFF_REQUIRE(duplicate.empty(), FileError, path, ": tensor '", duplicate,
                "' appears twice in the safetensors header");

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  const uint64_t data_size = file_size - h.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      IDIFF_REQUIRE(it.value().is_object(), FileError, path, ": __metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        IDIFF_REQUIRE(m.value().is_string(), FileError, path, ": __metadata__ value '", m.key(),
                      "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(it.key(), it.value(), data_size, path));
  }

  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : h.entries) by_offset.push_back(&e);
  std::sort(
      by_offset.begin(), by_offset.end(),
      [](const SafetensorsEntry* a, const SafetensorsEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    IDIFF_REQUIRE(by_offset[i]->begin >= by_offset[i - 1]->end, FileError, path, ": tensors '",
                  by_offset[i - 1]->name, "' and '", by_offset[i]->name, "' overlap");
  }
  return h;
}

std::vector<std::pair<std::string, RawTensor>> read_safetensors_tensors(std::istream& in,
                                                                        uint64_t file_size,
                                                                        const std::string& path) {
  const SafetensorsHeader h = read_safetensors_header(in, file_size, path);
  std::vector<std::pair<std::string, RawTensor>> out;
  for (const auto& e : h.entries) {
    const uint64_t n = e.end - e.begin;
    auto storage = RawStorage::allocate(static_cast<size_t>(n));
    if (n > 0) {
      in.seekg(static_cast<std::streamoff>(h.data_start + e.begin));
      in.read(reinterpret_cast<char*>(storage->mutable_data()), static_cast<std::streamsize>(n));
      IDIFF_REQUIRE(in.good(), FileError, path, ": could not read tensor '", e.name, "'");
    }
    out.emplace_back(e.name, contiguous_raw_tensor(e.dtype, e.shape, std::move(storage)));
  }
  return out;
}

std::string make_safetensors_header(std::vector<SafetensorsEntry>& entries,
                                    const std::map<std::string, std::string>& metadata) {
  json j = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (auto& e : entries) {
    IDIFF_REQUIRE(e.name != "__metadata__" && !j.contains(e.name), FileError,
                  "cannot write tensor name '", e.name,
                  "' twice or as __metadata__ in a safetensors file");
    const int64_t numel = checked_numel(e.shape);
    IDIFF_REQUIRE(numel >= 0, FileError, "tensor '", e.name, "' has an invalid shape ",
                  shape_string(e.shape));
    e.begin = offset;
    e.end = offset + static_cast<uint64_t>(numel) * dtype_size(e.dtype);
    offset = e.end;
    j[e.name] = {
        {"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string text;
  try {
    text = j.dump();
  } catch (const std::exception& e) {  // a name that is not UTF-8
    throw FileError(str("cannot write a safetensors header (", e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text;
}

}  // namespace idiff
