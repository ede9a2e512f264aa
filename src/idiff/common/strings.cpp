#include "idiff/common/strings.h"

#include "idiff/common/error.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

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

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  for (const auto& raw : split(text, ',')) {
    const std::string item = trim(raw);
    if (item.empty()) continue;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    IDIFF_REQUIRE(errno == 0 && end && *end == '\0', ConfigError, what, ": '", item,
                  "' is not an integer (expected a comma-separated list like 16,8)");
    out.push_back(v);
  }
  return out;
}

std::vector<double> parse_double_list(const std::string& text, const std::string& what) {
  std::vector<double> out;
  for (const auto& raw : split(text, ',')) {
    const std::string item = trim(raw);
    if (item.empty()) continue;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(item.c_str(), &end);
    IDIFF_REQUIRE(errno == 0 && end && *end == '\0', ConfigError, what, ": '", item,
                  "' is not a number (expected a comma-separated list like 0.9999,0.999)");
    out.push_back(v);
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

}  // namespace idiff
