// The benchmarks' command lines: flags that each take one value, set by a handler per flag.
// (bench_recipe and bench_all still parse their own; fused_lab uses this.)
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace rbm::bench {

struct Flag {
  std::string name;  // "--iters"
  std::function<void(const std::string& value)> set;
};

// Applies argv's "--flag value" pairs in order; on an unknown flag or a missing value prints the
// usage line to stderr and returns false.
inline bool parse_flags(int argc, char** argv, const std::vector<Flag>& flags,
                        const std::string& usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const Flag* flag = nullptr;
    for (const Flag& f : flags) flag = f.name == arg ? &f : flag;
    if (flag == nullptr || i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s %s\nusage: %s\n", usage.substr(0, usage.find(' ')).c_str(),
                   arg.c_str(), flag == nullptr ? "is not a flag" : "needs a value", usage.c_str());
      return false;
    }
    flag->set(argv[++i]);
  }
  return true;
}

}  // namespace rbm::bench
