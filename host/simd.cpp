#include "host/simd.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

#include "host/errors.hpp"

namespace rbm::cpu {

bool simd_usable(Simd simd) {
  switch (simd) {
    case Simd::scalar:
      return true;
    case Simd::avx2:
#if defined(__AVX2__) && defined(__FMA__)
      return true;  // the build's baseline: a CPU without AVX2 would not have got this far
#else
      return false;
#endif
    case Simd::avx512:
#if RBM_SIMD_AVX512
    {
      // Looked up once (philox_uniforms(Simd, ...) asks at every call). libgcc's check includes
      // the operating system's support for the 512-bit registers.
      static const bool usable = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") != 0;
      }();
      return usable;
    }
#else
      return false;
#endif
  }
  return false;
}

const char* simd_name(Simd simd) {
  switch (simd) {
    case Simd::scalar:
      return "scalar";
    case Simd::avx2:
      return "AVX2";
    case Simd::avx512:
      return "AVX-512";
  }
  return "?";
}

namespace {

Simd best_usable() {
  for (const Simd simd : {Simd::avx512, Simd::avx2}) {
    if (simd_usable(simd)) return simd;
  }
  return Simd::scalar;
}

struct Choice {
  std::atomic<Simd> simd;
  std::atomic<bool> from_environment;
};

// RBM_CPU_SIMD's choice, else the best usable. A bad RBM_CPU_SIMD leaves the best usable here:
// forced_simd() refused it before any work.
Choice& chosen() {
  static Choice choice = [] {
    std::optional<Simd> forced;
    try {
      forced = forced_simd();
    } catch (const InputError&) {
    }
    return Choice{forced.value_or(best_usable()), forced.has_value()};
  }();
  return choice;
}
}  // namespace

std::optional<Simd> forced_simd() {
  const char* text = std::getenv("RBM_CPU_SIMD");
  if (text == nullptr || *text == '\0') return std::nullopt;  // unset, or set empty: no choice
  const std::string value(text);
  for (const auto& [name, simd] :
       {std::pair{"avx2", Simd::avx2}, std::pair{"avx512", Simd::avx512}}) {
    if (value != name) continue;
    if (!simd_usable(simd)) {
      throw InputError("RBM_CPU_SIMD=" + value + ": this CPU (or this build) does not run " +
                       simd_name(simd) + "; " + simd_name(best_usable()) + " is its best");
    }
    return simd;
  }
  throw InputError("RBM_CPU_SIMD must be avx2 or avx512 (got '" + value + "')");
}

Simd simd() { return chosen().simd.load(std::memory_order_relaxed); }

bool simd_from_environment() { return chosen().from_environment.load(std::memory_order_relaxed); }

void set_simd(Simd simd) {
  if (!simd_usable(simd)) {
    throw std::invalid_argument(std::string(simd_name(simd)) + " is not usable on this CPU");
  }
  chosen().simd.store(simd, std::memory_order_relaxed);
  chosen().from_environment.store(false, std::memory_order_relaxed);
}

}  // namespace rbm::cpu
