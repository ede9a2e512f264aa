// Errors a user can cause (bad flag, bad file, bad data). The CLI prints what() as one
// line on stderr and exits non-zero; internal invariants use TORCH_CHECK instead.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace idiff {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A flag or setting is invalid (unknown value, impossible combination).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A file could not be read, or holds something other than what was expected.
class FileError : public Error {
 public:
  using Error::Error;
};

// A stop request (a signal) ended a wait; the caller stops as it would between steps.
class Interrupted : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, T&& v, Rest&&... rest) {
  os << std::forward<T>(v);
  append(os, std::forward<Rest>(rest)...);
}
}  // namespace detail

// Concatenates its arguments with operator<<: str("bad size ", n, " in ", path).
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  detail::append(os, std::forward<Args>(args)...);
  return os.str();
}

}  // namespace idiff

// Throws idiff::ErrorType with the concatenated message when cond is false.
#define IDIFF_REQUIRE(cond, ErrorType, ...)                  \
  do {                                                       \
    if (!(cond)) throw ErrorType(::idiff::str(__VA_ARGS__)); \
  } while (0)
