// Runs an executable of this project with arguments and captures its exit code and output, for
// the command-line tests of both builds.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/flags.hpp"

namespace rbm::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

using bench::shell_quote;  // the benchmarks' quoting of a word for the shell

inline CommandResult run_command(const std::string& exe, const std::vector<std::string>& args) {
  std::string command = shell_quote(exe);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " 2>&1 </dev/null";
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

inline int line_count(const std::string& text) {
  int lines = 0;
  for (const char c : text) lines += c == '\n';
  return lines;
}

}  // namespace rbm::test
