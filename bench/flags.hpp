// The benchmarks' command lines (bench_recipe, bench_all, fused_lab): flags that take one value
// and switches that take none, each set by a handler.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace rbm::bench {

struct Flag {
  std::string name;                                   // "--iters"
  std::function<void(const std::string& value)> set;  // a switch's gets ""
  bool takes_value = true;
};

// A flag without a value, e.g. "--numpy".
inline Flag switch_flag(std::string name, std::function<void()> on) {
  return {std::move(name), [on = std::move(on)](const std::string&) { on(); }, false};
}

// Applies argv's "--flag value" pairs in order; on an unknown flag or a missing value prints the
// usage line to stderr and returns false.
inline bool parse_flags(int argc, char** argv, const std::vector<Flag>& flags,
                        const std::string& usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const Flag* flag = nullptr;
    for (const Flag& f : flags) flag = f.name == arg ? &f : flag;
    if (flag == nullptr || (flag->takes_value && i + 1 >= argc)) {
      std::fprintf(stderr, "%s: %s %s\nusage: %s\n", usage.substr(0, usage.find(' ')).c_str(),
                   arg.c_str(), flag == nullptr ? "is not a flag" : "needs a value", usage.c_str());
      return false;
    }
    flag->set(flag->takes_value ? std::string(argv[++i]) : std::string());
  }
  return true;
}

// stdout a line at a time even into a pipe or file (scripts/device_check's log): a benchmark
// stopped by a timeout keeps every line it printed.
inline void flush_each_line() { std::setvbuf(stdout, nullptr, _IOLBF, 0); }

}  // namespace rbm::bench
