// Flag parsing shared by the `eval` and `sample` commands (host/commands.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rbm {

// Parses args (in order) into app. Returns the exit code when the command should stop now: 0
// after --help, 2 after a bad flag (one line on stderr naming it); nullopt to go on.
std::optional<int> parse_command_flags(CLI::App& app, const std::vector<std::string>& args,
                                       const std::string& program);

// "0".."9" or "all" (all ten digits: nullopt); InputError naming `flag` otherwise.
std::optional<int> parse_digit_flag(const std::string& flag, const std::string& text);

// InputError "FLAG must be RULE (got VALUE)" unless ok.
void require_flag(bool ok, const std::string& flag, const std::string& rule, int64_t value);

}  // namespace rbm
