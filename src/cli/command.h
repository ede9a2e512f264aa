// The idiff subcommands register themselves here (one file per subcommand in src/cli/),
// so main.cpp never changes when a command is added.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace idiff::cli {

struct Command {
  std::string name;
  std::string help;
  int order;  // position in `idiff --help`
  // Adds the subcommand's flags to `sub` and sets its callback (sub->callback(...)).
  std::function<void(CLI::App& sub)> setup;
};

std::vector<Command>& registry();

// Use at namespace scope: static const bool registered = register_command({...});
bool register_command(Command command);

}  // namespace idiff::cli
