#include "idiff/io/npy_format.h"

#include "idiff/common/error.h"
#include "idiff/io/atomic_file.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>

namespace idiff {
namespace {

constexpr size_t kMaxNpyHeader = 65536;
constexpr size_t kMaxRank = 64;

// A parser for the one dict literal numpy writes; anything else is an error.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  void parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (!peek('}')) {
      const std::string key = string();
      expect(':');
      if (key == "descr") {
        if (peek('[')) fail("structured arrays (a list descr) are not supported");
        *descr = string();
        have_descr = true;
      } else if (key == "fortran_order") {
        *fortran = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        *shape = tuple();
        have_shape = true;
      } else {
        fail("unexpected key '", key, "'");
      }
      if (!peek('}')) expect(',');
    }
    expect('}');
    if (!have_descr || !have_fortran || !have_shape) fail("needs descr, fortran_order and shape");
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(Args&&... args) const {
    throw FileError(str(what_, ": bad .npy header (", std::forward<Args>(args)..., ")"));
  }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  bool peek(char c) {
    skip_space();
    return i_ < s_.size() && s_[i_] == c;
  }
  void expect(char c) {
    if (!peek(c)) fail("expected '", c, "' at byte ", i_);
    ++i_;
  }
  std::string string() {
    skip_space();
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"'))
      fail("expected a string at byte ", i_);
    const char quote = s_[i_++];
    const size_t end = s_.find(quote, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(i_, end - i_);
    i_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    if (s_.compare(i_, 4, "True") == 0) return i_ += 4, true;
    if (s_.compare(i_, 5, "False") == 0) return i_ += 5, false;
    fail("expected True or False at byte ", i_);
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    while (!peek(')')) {
      skip_space();
      const size_t start = i_;
      int64_t v = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        if (v > ((int64_t{1} << 62) - 9) / 10) fail("dimension too large");
        v = v * 10 + (s_[i_++] - '0');
      }
      if (i_ == start) fail("expected a dimension at byte ", i_);
      if (s_.compare(i_, 1, "L") == 0) ++i_;  // Python 2 longs
      out.push_back(v);
      if (out.size() > kMaxRank) fail("more than ", kMaxRank, " dimensions");
      if (!peek(')')) expect(',');
    }
    expect(')');
    return out;
  }

  const std::string& s_;
  const std::string& what_;
  size_t i_ = 0;
};

void add_to_npz(ZipWriter& zip, const std::string& key, const RawTensor& t,
                std::deque<std::string>& copies) {
  check_view(t, key);
  std::string header = make_npy_header(t.dtype, t.sizes);
  const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype);
  const uint8_t* data = t.storage->data + static_cast<size_t>(t.offset) * dtype_size(t.dtype);
  if (!t.is_contiguous()) {
    copies.push_back(contiguous_bytes(t));
    data = reinterpret_cast<const uint8_t*>(copies.back().data());
  }
  zip.add_two_parts(key + ".npy", std::move(header), data, nbytes);
}

}  // namespace

NpyHeader parse_npy_header(const uint8_t* p, size_t n, const std::string& what) {
  IDIFF_REQUIRE(n >= 10 && std::memcmp(p, "\x93NUMPY", 6) == 0, FileError, what,
                ": not an .npy array (no \\x93NUMPY magic)");
  const int major = p[6];
  IDIFF_REQUIRE(major >= 1 && major <= 3, FileError, what, ": .npy version ", major,
                " is not supported (1 to 3 are)");
  size_t header_len, start;
  if (major == 1) {
    header_len = p[8] | (size_t{p[9]} << 8);
    start = 10;
  } else {
    IDIFF_REQUIRE(n >= 12, FileError, what, ": truncated .npy header");
    header_len = p[8] | (size_t{p[9]} << 8) | (size_t{p[10]} << 16) | (size_t{p[11]} << 24);
    start = 12;
  }
  IDIFF_REQUIRE(header_len <= kMaxNpyHeader && header_len <= n - start, FileError, what,
                ": .npy header of ", header_len, " bytes does not fit the ", n, "-byte array");
  const std::string header(reinterpret_cast<const char*>(p + start), header_len);
  std::string descr;
  NpyHeader h;
  HeaderParser(header, what).parse(&descr, &h.fortran_order, &h.shape);
  IDIFF_REQUIRE(dtype_from_npy_descr(descr, &h.dtype), FileError, what, ": .npy dtype '",
                descr.substr(0, 20),
                "' is not supported (little-endian bool, int8-64, uint8, "
                "float16/32/64 are)");
  const int64_t numel = checked_numel(h.shape);
  IDIFF_REQUIRE(numel >= 0, FileError, what, ": .npy shape ", shape_string(h.shape),
                " is too large");
  h.data_start = start + header_len;
  h.data_bytes = static_cast<uint64_t>(numel) * dtype_size(h.dtype);
  return h;
}

size_t npy_header_length(const uint8_t* p, size_t n) {
  if (n < 12 || std::memcmp(p, "\x93NUMPY", 6) != 0) return 0;
  if (p[6] == 1) return 10 + (p[8] | (size_t{p[9]} << 8));
  return 12 + (p[8] | (size_t{p[9]} << 8) | (size_t{p[10]} << 16) | (size_t{p[11]} << 24));
}

RawTensor parse_npy(std::shared_ptr<const RawStorage> bytes, const std::string& what) {
  const uint8_t* p = bytes->data;
  const size_t n = bytes->nbytes;
  const NpyHeader h = parse_npy_header(p, n, what);
  const DType dtype = h.dtype;
  const std::vector<int64_t>& shape = h.shape;
  const bool fortran = h.fortran_order;
  const size_t data_start = h.data_start;
  const uint64_t need = h.data_bytes;
  IDIFF_REQUIRE(n - data_start == need, FileError, what, ": .npy array of shape ",
                shape_string(shape), " and dtype ", dtype_name(dtype), " needs ", need,
                " bytes, the file holds ", n - data_start);

  RawTensor t;
  t.dtype = dtype;
  t.sizes = shape;
  if (data_start % dtype_size(dtype) == 0) {
    t.storage = std::move(bytes);
    t.offset = static_cast<int64_t>(data_start / dtype_size(dtype));
  } else {  // an unaligned header: copy so the elements are aligned
    auto copy = RawStorage::allocate(need);
    std::memcpy(copy->mutable_data(), p + data_start, need);
    t.storage = std::move(copy);
  }
  if (fortran) {
    // Column-major: the first index is fastest.
    t.strides = contiguous_strides(std::vector<int64_t>(shape.rbegin(), shape.rend()));
    std::reverse(t.strides.begin(), t.strides.end());
  } else {
    t.strides = contiguous_strides(shape);
  }
  check_view(t, what);
  return t;
}

std::string make_npy_header(DType dtype, const std::vector<int64_t>& shape) {
  const char* descr = npy_descr(dtype);
  IDIFF_REQUIRE(descr != nullptr, FileError, "numpy has no ", dtype_name(dtype),
                " dtype; convert the tensor (e.g. to float32) before writing .npy/.npz");
  std::string dict = str("{'descr': '", descr, "', 'fortran_order': False, 'shape': (");
  for (size_t i = 0; i < shape.size(); ++i) dict += str(i ? ", " : "", shape[i]);
  dict += shape.size() == 1 ? ",), }" : "), }";
  // magic(6) + version(2) + length(2) + dict + padding + '\n', a multiple of 64.
  const size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict;
}

NamedRawTensors read_npz_arrays(const ZipReader& zip) {
  NamedRawTensors out;
  for (const auto& name : zip.names()) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;
    auto bytes = zip.read(name, UINT64_MAX);
    out.emplace_back(name.substr(0, name.size() - 4),
                     parse_npy(std::move(bytes), zip.what() + ":" + name));
  }
  IDIFF_REQUIRE(!out.empty() || zip.names().empty(), FileError, zip.what(),
                ": a zip archive without .npy records, so not an npz file");
  return out;
}

namespace {

// An npz member name is a path inside the zip: a name that climbs out of it ("../x", "/abs",
// backslashes) is a path-traversal hazard for whoever unzips the file, so it is refused.
void check_member_name(const std::string& path, const std::string& key) {
  bool safe = !key.empty() && key[0] != '/' && key.find('\\') == std::string::npos &&
              key.find('\0') == std::string::npos;
  size_t start = 0;
  while (safe && start <= key.size()) {
    const size_t end = std::min(key.find('/', start), key.size());
    safe = key.compare(start, end - start, "..") != 0;
    start = end + 1;
  }
  IDIFF_REQUIRE(safe, FileError, path, ": array name '", key,
                "' is not a safe npz member name (no '..' parts, leading '/' or backslashes)");
}

}  // namespace

void write_npz_arrays(const std::string& path, const NamedRawTensors& arrays) {
  for (const auto& [key, t] : arrays) {
    check_member_name(path, key);
    IDIFF_REQUIRE(npy_descr(t.dtype) != nullptr, FileError, path, ": array '", key, "' is ",
                  dtype_name(t.dtype),
                  ", which numpy has no dtype for; write .safetensors or .pt (both keep it) or "
                  "cast it to float32 first");
  }
  write_file_atomically(path, [&](const std::string& tmp) {
    ZipWriter zip(tmp);
    std::deque<std::string> copies;  // zip.add_two_parts keeps pointers into these
    for (const auto& [key, t] : arrays) add_to_npz(zip, key, t, copies);
    zip.close();
  });
}

void write_npy_array(const std::string& path, const RawTensor& t) {
  check_view(t, path);
  IDIFF_REQUIRE(npy_descr(t.dtype) != nullptr, FileError, path, ": the array is ",
                dtype_name(t.dtype), ", which numpy has no dtype for; cast it to float32 first");
  const std::string header = make_npy_header(t.dtype, t.sizes);
  write_file_atomically(path, [&](const std::string& tmp) {
    FileWriter f(tmp);
    f.write(header);
    if (t.is_contiguous()) {
      f.write(t.storage->data + static_cast<size_t>(t.offset) * dtype_size(t.dtype),
              static_cast<size_t>(t.numel()) * dtype_size(t.dtype));
    } else {
      f.write(contiguous_bytes(t));
    }
    f.close();
  });
}

}  // namespace idiff
