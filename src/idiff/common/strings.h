// Parsing helpers for flag values shared by the library and the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idiff {

// "16,8" -> {16, 8}. Empty items are skipped; anything else that is not an integer is a
// ConfigError naming `what` (the flag) and the bad item.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);

// "0.9999,0.999" -> {0.9999, 0.999}; errors as parse_int_list.
std::vector<double> parse_double_list(const std::string& text, const std::string& what);

// The reference's str2bool: yes/true/t/y/1 and no/false/f/n/0, any case.
bool parse_bool(const std::string& text, const std::string& what);

std::vector<std::string> split(const std::string& text, char sep);
std::string trim(const std::string& text);

}  // namespace idiff
