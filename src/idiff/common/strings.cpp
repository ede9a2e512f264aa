#include "idiff/common/strings.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace idiff {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string trim(const std::string& text) {
  size_t b = 0, e = text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
  return text.substr(b, e - b);
}

namespace {

// The items of a comma-separated list: none for an empty text, else every item trimmed and
// non-empty (the reference's int(x) for x in text.split(",") refuses "3,,7" too).
std::vector<std::string> list_items(const std::string& text, const std::string& what,
                                    const char* example) {
  std::vector<std::string> out;
  if (trim(text).empty()) return out;
  for (const auto& raw : split(text, ',')) {
    out.push_back(trim(raw));
    IDIFF_REQUIRE(!out.back().empty(), ConfigError, what, ": '", text,
                  "' has an empty item (expected a comma-separated list like ", example, ")");
  }
  return out;
}

std::string range_text(int64_t min, int64_t max) {
  return str("an integer from ", min, " to ", max);
}

}  // namespace

int64_t parse_int(const std::string& text, const std::string& what, int64_t min, int64_t max) {
  const std::string item = trim(text);
  int64_t v = 0;
  const char* first = item.data();
  const char* last = item.data() + item.size();
  if (first != last && *first == '+') ++first;  // "+5", as Python's int() takes it
  const auto [end, ec] = std::from_chars(first, last, v);
  IDIFF_REQUIRE(ec != std::errc::invalid_argument && end == last && !item.empty(), ConfigError,
                what, ": '", text, "' is not an integer (expected ", range_text(min, max), ")");
  IDIFF_REQUIRE(ec != std::errc::result_out_of_range && v >= min && v <= max, ConfigError, what,
                ": ", item, " is out of range (expected ", range_text(min, max), ")");
  return v;
}

uint64_t parse_uint64(const std::string& text, const std::string& what) {
  const std::string item = trim(text);
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
  const std::string expected = str("an integer from 0 to ", std::numeric_limits<uint64_t>::max());
  IDIFF_REQUIRE(
      ec != std::errc::invalid_argument && end == item.data() + item.size() && !item.empty(),
      ConfigError, what, ": '", text, "' is not an integer (expected ", expected, ")");
  IDIFF_REQUIRE(ec != std::errc::result_out_of_range, ConfigError, what, ": ", item,
                " is out of range (expected ", expected, ")");
  return v;
}

double parse_double(const std::string& text, const std::string& what, double min, double max) {
  const std::string item = trim(text);
  char* end = nullptr;
  const double v = std::strtod(item.c_str(), &end);
  IDIFF_REQUIRE(!item.empty() && end && *end == '\0', ConfigError, what, ": '", text,
                "' is not a number");
  // Overflow ("1e999") gives an infinity: refused with "inf" and "nan".
  IDIFF_REQUIRE(std::isfinite(v), ConfigError, what, ": '", text, "' is not a finite number");
  IDIFF_REQUIRE(
      v >= min && v <= max, ConfigError, what, ": ", item, " is out of range (expected ",
      std::isinf(max) ? str("a number >= ", min) : str("a number from ", min, " to ", max), ")");
  return v;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  for (const std::string& item : list_items(text, what, "16,8")) {
    out.push_back(parse_int(item, what, std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max()));
  }
  return out;
}

std::vector<double> parse_double_list(const std::string& text, const std::string& what) {
  std::vector<double> out;
  const double inf = std::numeric_limits<double>::infinity();
  for (const std::string& item : list_items(text, what, "0.9999,0.999")) {
    out.push_back(parse_double(item, what, -inf, inf));
  }
  return out;
}

bool parse_bool(const std::string& text, const std::string& what) {
  std::string v = text;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  if (v == "yes" || v == "true" || v == "t" || v == "y" || v == "1") return true;
  if (v == "no" || v == "false" || v == "f" || v == "n" || v == "0") return false;
  throw ConfigError(str(what, ": '", text, "' is not a boolean (expected True or False)"));
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace idiff
