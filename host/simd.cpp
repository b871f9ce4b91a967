#include "host/simd.hpp"

#include <atomic>
#include <string>

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
      // libgcc's check includes the operating system's support for the 512-bit registers.
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f");
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

std::atomic<Simd>& chosen() {
  static std::atomic<Simd> simd{best_usable()};
  return simd;
}

}  // namespace

Simd simd() { return chosen().load(std::memory_order_relaxed); }

void set_simd(Simd simd) {
  if (!simd_usable(simd)) {
    throw std::invalid_argument(std::string(simd_name(simd)) + " is not usable on this CPU");
  }
  chosen().store(simd, std::memory_order_relaxed);
}

}  // namespace rbm::cpu
