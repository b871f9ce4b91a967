// The vector instructions of the CPU build. Its baseline is AVX2 with FMA (RBM_CPU_ARCH,
// x86-64-v3); where the CPU also has AVX-512F, looked up at run time, the loops that give the same
// bits at any vector width run compiled for it too (with_simd): the Philox draws, and loops that
// work unit by unit (the sigmoids, the tempered conditionals). Sums whose order follows the vector
// width (the dot products of W h) stay as the baseline computes them, so that a model trains to
// the same bits on any x86-64-v3 CPU, with or without AVX-512.
#pragma once

#include <optional>

// AVX-512 code is compiled, through function target attributes, where GCC or Clang target x86-64
// with a baseline of AVX2 and FMA. Below that baseline the AVX-512 copies would fuse multiply-adds
// (target("avx512f") brings FMA) that the baseline computes as two roundings: other bits.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__AVX2__) && defined(__FMA__)
#define RBM_SIMD_AVX512 1
#else
#define RBM_SIMD_AVX512 0
#endif

// with_simd's second copy, GCC only: Clang decides which multiply-adds to fuse (-ffp-contract=fast)
// as it generates code, differently at another vector width (1 ulp on ternary units, seen in
// review). GCC fuses them before it vectorizes, the same way at any width. Philox and sum_of_rows
// (no multiply-adds) take AVX-512 under either compiler.
#if RBM_SIMD_AVX512 && !defined(__clang__)
#define RBM_SIMD_AVX512_LOOPS 1
#else
#define RBM_SIMD_AVX512_LOOPS 0
#endif

namespace rbm::cpu {

enum class Simd { scalar, avx2, avx512 };

// Compiled in and run by this CPU (scalar always; AVX2 where the build targets it).
bool simd_usable(Simd simd);
const char* simd_name(Simd simd);

// RBM_CPU_SIMD, the instructions a user chose (avx2 or avx512: to compare them, or to keep 512-bit
// work off a CPU that slows its clock for it), when set and not empty; InputError when it names
// neither or one this CPU or build does not run. The backends' factories look at it first, so
// that a bad value is refused before any work.
std::optional<Simd> forced_simd();

// In use: RBM_CPU_SIMD's choice, else the best usable, unless set_simd chose another. Scalar (for
// tests, and builds without AVX2) means the plain Philox; the other loops are the baseline's.
Simd simd();
// Whether simd() is RBM_CPU_SIMD's choice (as run.json's device says).
bool simd_from_environment();
// For tests and benchmarks, which compare the paths: throws std::invalid_argument when `simd` is
// not usable. Not for use while another thread computes.
void set_simd(Simd simd);

// Runs body(), compiled for AVX-512F when simd() is AVX-512, else for the baseline. body is a
// lambda marked RBM_SIMD_BODY, so that it is compiled into each of the two callers below (and
// vectorized there with their instructions) rather than called from them.
#define RBM_SIMD_BODY __attribute__((always_inline))

template <class Body>
__attribute__((noinline)) void run_on_baseline(const Body& body) {
  body();
}

#if RBM_SIMD_AVX512
template <class Body>
__attribute__((noinline, target("avx512f"))) void run_on_avx512(const Body& body) {
  body();
}
#endif

template <class Body>
void with_simd(const Body& body) {
#if RBM_SIMD_AVX512_LOOPS
  if (simd() == Simd::avx512) {
    run_on_avx512(body);
    return;
  }
#endif
  run_on_baseline(body);
}

}  // namespace rbm::cpu
