#include "host/cpu_threads.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "host/errors.hpp"

namespace rbm {

std::optional<int> forced_cpu_threads() {
  const char* text = std::getenv("RBM_CPU_THREADS");
  if (text == nullptr || *text == '\0') return std::nullopt;  // unset, or set empty: no choice
  const std::string_view value(text);
  int threads = 0;
  const auto [stop, error] = std::from_chars(value.data(), value.data() + value.size(), threads);
  if (error != std::errc() || stop != value.data() + value.size() || threads < 1 ||
      threads > 1024) {
    throw InputError("RBM_CPU_THREADS must be an integer in 1..1024 (got '" + std::string(value) +
                     "')");
  }
  return threads;
}

int cpu_threads() {
  if (const std::optional<int> forced = forced_cpu_threads()) return *forced;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace rbm
