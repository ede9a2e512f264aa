// The idiff program: parses the subcommand and its flags (CLI11) and hands the work to the
// library. Errors become one line on stderr: exit 2 for a flag or setting the parser or the
// library refuses (a ConfigError: unknown, unconvertible, out of range, conflicting), 1 for
// everything else (files, data, runtime).
#include "command.h"

#include "idiff/common/error.h"

#include <c10/util/Exception.h>
#include <c10/util/Logging.h>

#include <algorithm>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

namespace idiff::cli {

std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}

bool register_command(Command command) {
  registry().push_back(std::move(command));
  return true;
}

// The library names a setting by its field name in backquotes (`num_res_blocks`); the
// program says which flag that is (--num_res_blocks) when the running command has it.
std::string name_flags(const std::string& message, const CLI::App& app) {
  static const std::regex setting("`([a-z][a-z0-9_]*)`");
  const std::vector<const CLI::App*> commands = [&] {
    std::vector<const CLI::App*> out{&app};
    for (const CLI::App* sub : app.get_subcommands()) out.push_back(sub);
    return out;
  }();
  std::string out;
  auto last = message.cbegin();
  for (std::sregex_iterator it(message.begin(), message.end(), setting), end; it != end; ++it) {
    const std::string flag = "--" + (*it)[1].str();
    const bool known = std::any_of(commands.begin(), commands.end(), [&](const CLI::App* c) {
      return c->get_option_no_throw(flag) != nullptr;
    });
    out.append(last, (*it)[0].first);
    out += known ? flag : (*it)[0].str();
    last = (*it)[0].second;
  }
  out.append(last, message.cend());
  return out;
}

namespace {

// Levenshtein distance, for "did you mean" (a few dozen short names: the plain O(nm) table).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The flag of `app` closest to `unknown` ("--num_channel" -> "--num_channels"), or "".
std::string closest_flag(const CLI::App& app, const std::string& unknown) {
  const std::string name = unknown.substr(0, unknown.find('='));
  std::string best;
  size_t best_distance = std::max<size_t>(2, name.size() / 4) + 1;
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& lname : o->get_lnames()) {
      const size_t d = edit_distance(name, "--" + lname);
      if (d < best_distance) best_distance = d, best = "--" + lname;
    }
  }
  return best;
}

}  // namespace

// The --flags of `words` that `command` (or the program) does not know, each with the
// closest known one: "unknown flag --num_channel (did you mean --num_channels?)"; "" when
// all are known. Checked before parsing, so an unknown flag's value is never taken for a
// positional argument.
std::string unknown_flags(const CLI::App& app, const CLI::App& command,
                          const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& word : words) {
    if (word.rfind("--", 0) != 0 || word == "--") continue;
    const std::string name = word.substr(0, word.find('='));
    if (command.get_option_no_throw(name) != nullptr || app.get_option_no_throw(name) != nullptr)
      continue;
    const std::string guess = closest_flag(command, name);
    out += (out.empty() ? "unknown flag " : ", unknown flag ") + name +
           (guess.empty() ? "" : " (did you mean " + guess + "?)");
  }
  return out;
}

}  // namespace idiff::cli

int main(int argc, char** argv) {
  using idiff::cli::registry;
  // c10d logs its retries and failures through c10's logger; honour TORCH_CPP_LOG_LEVEL
  // (e.g. ERROR or FATAL to quieten them) as PyTorch does. The library leaves it to us.
  c10::initLogging();
  CLI::App app{
      "idiff: improved denoising diffusion probabilistic models (Nichol & Dhariwal 2021) on "
      "LibTorch.\nFlags are the reference's (improved-diffusion); booleans take True/False."};
  app.name("idiff");
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::simple);
  app.set_version_flag("--version", "idiff 0.1.0");

  auto commands = registry();
  std::sort(commands.begin(), commands.end(),
            [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    sub->failure_message(CLI::FailureMessage::simple);
    c.setup(*sub);
  }

  // A first word that is neither a flag nor a command: say so (CLI11 would only say that a
  // subcommand is required).
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(commands.begin(), commands.end(),
                   [&](const auto& c) { return c.name == argv[1]; })) {
    std::string names;
    for (const auto& c : commands) names += (names.empty() ? "" : ", ") + c.name;
    std::cerr << "idiff: error: unknown command '" << argv[1] << "' (commands: " << names << ")\n";
    return 2;
  }

  if (argc > 1 && argv[1][0] != '-') {  // a known command (checked above)
    const std::string unknown = idiff::cli::unknown_flags(
        app, *app.get_subcommand(argv[1]), std::vector<std::string>(argv + 2, argv + argc));
    if (!unknown.empty()) {
      std::cerr << "idiff: error: " << unknown << " (idiff " << argv[1]
                << " --help lists the flags)\n";
      return 2;
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; anything else is a flag error on one line.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::string where = "idiff";
    for (const CLI::App* sub : app.get_subcommands()) where += " " + sub->get_name();
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    std::cerr << "idiff: error: " << msg << " (" << where << " --help lists the flags)\n";
    return 2;
  } catch (const idiff::ConfigError& e) {
    // A bad or conflicting setting is a flag error too, wherever the library found it.
    std::cerr << "idiff: error: " << idiff::cli::name_flags(e.what(), app) << "\n";
    return 2;
  } catch (const idiff::Interrupted& e) {
    // A stop signal ended the run early, its finished work saved: the shell's 128 + SIGINT.
    std::cerr << "idiff: stopped by " << e.what() << "\n";
    return 130;
  } catch (const idiff::Error& e) {
    std::cerr << "idiff: error: " << idiff::cli::name_flags(e.what(), app) << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "idiff: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "idiff: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
