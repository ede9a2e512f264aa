// Parsing and formatting helpers for flag values and logs, shared by the library and the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// "16,8" -> {16, 8}; "" (or only spaces) -> {}. An empty item ("3,,7", ",") or one that
// is not an integer is a ConfigError naming `what` (the flag) and the bad item.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);

// "0.9999,0.999" -> {0.9999, 0.999}; errors as parse_int_list, and NaN or infinity is one.
std::vector<double> parse_double_list(const std::string& text, const std::string& what);

// One decimal integer in [min, max] (surrounding spaces allowed). Anything else, a value
// beyond int64 included, is a ConfigError naming `what` and the range: never clamped.
int64_t parse_int(const std::string& text, const std::string& what, int64_t min, int64_t max);
uint64_t parse_uint64(const std::string& text, const std::string& what);
// A finite number in [min, max] (max may be infinity: no upper bound); NaN and infinities
// are ConfigErrors.
double parse_double(const std::string& text, const std::string& what, double min, double max);

// The reference's str2bool: yes/true/t/y/1 and no/false/f/n/0, any case.
bool parse_bool(const std::string& text, const std::string& what);

std::vector<std::string> split(const std::string& text, char sep);
std::string trim(const std::string& text);
// {"a", "b"}, ", " -> "a, b".
std::string join(const std::vector<std::string>& items, const std::string& sep);

// Full precision, as numpy prints a float64 (the reference logs np.mean(...)).
std::string format_double(double v);

}  // namespace idiff
