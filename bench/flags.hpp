// The benchmarks' command lines (bench_recipe, bench_all, fused_lab): flags that take one value
// and switches that take none, each set by a handler.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "host/command_flags.hpp"

namespace rbm::bench {

struct Flag {
  std::string name;                                   // "--iters"
  std::function<void(const std::string& value)> set;  // a switch's gets ""
  bool takes_value = true;
};

// `text` as one word of a POSIX shell's command line (system(), popen()): in single quotes, each
// ' as '\'' (paths with spaces or quotes stay one argument).
inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// A flag without a value, e.g. "--numpy".
inline Flag switch_flag(std::string name, std::function<void()> on) {
  return {std::move(name), [on = std::move(on)](const std::string&) { on(); }, false};
}

// A flag that sets an integer in [min, max], written as the trainer's flags are (decimal, or
// scientific notation of an exact integer: 2.5e4; host/command_flags.hpp's parse_int_flag, the
// one parser); any other value ("10x", "", "0" below min 1) is refused, naming the flag.
template <typename Int>
Flag int_flag(std::string name, Int& target, Int min, Int max) {
  return {name, [name, &target, min, max](const std::string& value) {
            const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
            target = static_cast<Int>(parse_int_flag(name, value, static_cast<int64_t>(min),
                                                     static_cast<int64_t>(max), range));
          }};
}

// Applies argv's "--flag value" pairs in order; on an unknown flag, a flag given twice (which of
// the two was meant? rbm_cpu refuses it too), a missing value or a value its handler refuses (by
// throwing) prints why and the usage line to stderr and returns false.
inline bool parse_flags(int argc, char** argv, const std::vector<Flag>& flags,
                        const std::string& usage) {
  std::vector<const Flag*> given;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const Flag* flag = nullptr;
    for (const Flag& f : flags) flag = f.name == arg ? &f : flag;
    const bool again =
        flag != nullptr && std::find(given.begin(), given.end(), flag) != given.end();
    if (flag == nullptr || again || (flag->takes_value && i + 1 >= argc)) {
      std::fprintf(stderr, "%s: %s %s\nusage: %s\n", usage.substr(0, usage.find(' ')).c_str(),
                   arg.c_str(),
                   flag == nullptr ? "is not a flag"
                   : again         ? "is given twice"
                                   : "needs a value",
                   usage.c_str());
      return false;
    }
    given.push_back(flag);
    try {
      flag->set(flag->takes_value ? std::string(argv[++i]) : std::string());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\nusage: %s\n", usage.substr(0, usage.find(' ')).c_str(),
                   e.what(), usage.c_str());
      return false;
    }
  }
  return true;
}

// stdout a line at a time even into a pipe or file (scripts/device_check's log): a benchmark
// stopped by a timeout keeps every line it printed.
inline void flush_each_line() { std::setvbuf(stdout, nullptr, _IOLBF, 0); }

// 0, or 2 with one line on stderr when standard output did not take everything printed to it (a
// full disk, /dev/full): the table is the result, and exit 0 with the numbers lost would say
// otherwise (an exploratory tester's finding). The reason is the final flush's when that fails;
// an earlier failed write (a line-buffered row) leaves only the error flag, and no errno to trust.
inline int stdout_written(const std::string& name) {
  errno = 0;
  const bool flush_failed = std::fflush(stdout) != 0;
  const int flush_errno = errno;
  if (!flush_failed && !std::ferror(stdout)) return 0;
  std::fprintf(stderr, "%s: cannot write the results to standard output%s\n", name.c_str(),
               flush_failed && flush_errno != 0
                   ? (std::string(": ") + std::strerror(flush_errno)).c_str()
                   : "");
  return 2;
}

// A benchmark's main: stdout flushed a line at a time, the flags parsed, then run(); --help prints
// the usage line (exit 0); a bad flag, an exception out of run(), or a standard output that could
// not be written (stdout_written) is one line on stderr and exit code 2. The program's name is the
// usage line's first word.
template <typename Run>
int bench_main(int argc, char** argv, const std::vector<Flag>& flags, const std::string& usage,
               Run run) {
  flush_each_line();
  const std::string name = usage.substr(0, usage.find(' '));
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::printf("usage: %s\n", usage.c_str());
      return stdout_written(name);
    }
  }
  if (!parse_flags(argc, argv, flags, usage)) return 2;
  int code = 2;
  try {
    code = run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
  }
  const int written = stdout_written(name);
  return written != 0 ? written : code;
}

}  // namespace rbm::bench
