// Flag parsing shared by the commands (see command_flags.hpp).
#include "host/command_flags.hpp"

#include <algorithm>
#include <cstdio>

#include "host/errors.hpp"

namespace rbm {

std::optional<int> parse_command_flags(CLI::App& app, const std::vector<std::string>& args,
                                       const std::string& program) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "%s %s: %s (see --help)\n", program.c_str(), app.get_name().c_str(),
                 e.what());
    return 2;
  }
  return std::nullopt;
}

std::optional<int> parse_digit_flag(const std::string& flag, const std::string& text) {
  if (text == "all") return std::nullopt;
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '9') return text[0] - '0';
  throw InputError(flag + " must be 0..9 or all (got '" + text + "')");
}

void require_flag(bool ok, const std::string& flag, const std::string& rule, int64_t value) {
  if (!ok) throw InputError(flag + " must be " + rule + " (got " + std::to_string(value) + ")");
}

}  // namespace rbm
