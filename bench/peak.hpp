// The CPU's limits the benchmarks measure against, and the median: one core's fused multiply-add
// throughput, and the machine's (every core at once). Shared by bench_recipe and bench_all.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace rbm::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#if defined(__AVX2__) && defined(__FMA__)
// Twelve independent multiply-add chains of `rounds` FMAs on one vector type, enough to cover the
// FMA latency on both FMA pipes, the constants in registers; returns a lane of their sum (which
// keeps them alive). In a function of its own (noinline): inlined beside the timing calls, GCC
// kept the 512-bit accumulators on the stack and measured a third of the peak.
#define RBM_FMA_CHAINS(Vec, Set, Fma)                                                        \
  Vec mul = Set(0.999999f), add = Set(1e-7f);                                                \
  __asm__("" : "+v"(mul), "+v"(add)); /* opaque: kept in registers, not folded into loads */ \
  /* Distinct starts: equal ones would be merged into one chain. */                          \
  Vec a0 = Set(0.10f), a1 = Set(0.11f), a2 = Set(0.12f), a3 = Set(0.13f), a4 = Set(0.14f);   \
  Vec a5 = Set(0.15f), a6 = Set(0.16f), a7 = Set(0.17f), a8 = Set(0.18f), a9 = Set(0.19f);   \
  Vec a10 = Set(0.20f), a11 = Set(0.21f);                                                    \
  for (int64_t r = 0; r < rounds; ++r) {                                                     \
    a0 = Fma(a0, mul, add), a1 = Fma(a1, mul, add), a2 = Fma(a2, mul, add);                  \
    a3 = Fma(a3, mul, add), a4 = Fma(a4, mul, add), a5 = Fma(a5, mul, add);                  \
    a6 = Fma(a6, mul, add), a7 = Fma(a7, mul, add), a8 = Fma(a8, mul, add);                  \
    a9 = Fma(a9, mul, add), a10 = Fma(a10, mul, add), a11 = Fma(a11, mul, add);              \
  }                                                                                          \
  const Vec sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;               \
  float lane = 0.0f;                                                                         \
  std::memcpy(&lane, &sum, sizeof lane);                                                     \
  return lane

__attribute__((noinline)) inline float fma_chains_avx2(int64_t rounds) {
  RBM_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps);
}

// Built for AVX-512 whatever -march says (the project's code targets x86-64-v3), run only where
// the CPU has it: 16-lane FMAs double the 8-lane peak on CPUs with 512-bit FMA pipes.
__attribute__((target("avx512f"), noinline)) inline float fma_chains_avx512(int64_t rounds) {
  RBM_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps);
}
#undef RBM_FMA_CHAINS

// GFLOP/s of chains(rounds), 12 chains of `lanes` lanes at 2 FLOPs per lane per FMA: the median
// of three runs.
inline double chains_rate(int64_t rounds, int lanes, float (*chains)(int64_t)) {
  std::vector<double> rates;
  float kept = 0.0f;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    kept += chains(rounds);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(rounds) * 12 * lanes * 2 / seconds / 1e9);
  }
  if (kept == 1234.5f) std::printf(" ");  // the chains' results are used
  return median(rates);
}
#endif

// The widest fp32 FMA this CPU runs: "AVX-512", "AVX2", or "" (a build without AVX2/FMA, which
// measures no limit). The peaks below are of that width: the hardware's limit, which the
// project's own AVX2 code cannot reach on a CPU with 512-bit FMA pipes, but BLAS may.
inline const char* fma_peak_isa() {
#if defined(__AVX2__) && defined(__FMA__)
  return __builtin_cpu_supports("avx512f") ? "AVX-512" : "AVX2";
#else
  return "";
#endif
}

// The fp32 lanes of that FMA: 16, 8, or 0 without a measured limit.
inline int fma_peak_lanes() {
#if defined(__AVX2__) && defined(__FMA__)
  return __builtin_cpu_supports("avx512f") ? 16 : 8;
#else
  return 0;
#endif
}

// One core's fused multiply-add throughput in GFLOP/s, with the widest FMA (fma_peak_isa()):
// 12 chains of fma_peak_lanes() lanes, `rounds` FMAs each, three times.
inline double measure_core_fma_peak(int64_t rounds = 100'000'000) {
#if defined(__AVX2__) && defined(__FMA__)
  return fma_peak_lanes() == 16 ? chains_rate(rounds, 16, fma_chains_avx512)
                                : chains_rate(rounds, 8, fma_chains_avx2);
#else
  (void)rounds;
  return 0.0;  // no AVX2/FMA build: the limit is not measured
#endif
}

// The machine's FMA throughput in GFLOP/s: the same loop on `threads` threads at once, summed
// (frequency and shared resources under full load included).
inline double measure_machine_fma_peak(int threads, int64_t rounds = 100'000'000) {
  std::vector<double> rates(static_cast<size_t>(std::max(threads, 1)));
  std::vector<std::thread> workers;
  for (size_t t = 0; t < rates.size(); ++t) {
    workers.emplace_back([&rates, t, rounds] { rates[t] = measure_core_fma_peak(rounds); });
  }
  for (std::thread& w : workers) w.join();
  double sum = 0.0;
  for (const double r : rates) sum += r;
  return sum;
}

}  // namespace rbm::bench
