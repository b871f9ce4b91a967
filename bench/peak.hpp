// The CPU's limits the benchmarks measure against, and the median: one core's fused multiply-add
// throughput, and the machine's (every core at once). Shared by bench_recipe and bench_all.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
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

// One core's fused multiply-add throughput in GFLOP/s (2 FLOPs per lane per FMA): twelve
// independent 8-lane multiply-add chains, enough to cover the FMA latency on both FMA pipes, with
// the constants in registers; the median of three runs of `rounds` rounds.
inline double measure_core_fma_peak(int64_t rounds = 100'000'000) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
  __asm__("" : "+x"(mul), "+x"(add));  // opaque values: kept in registers, not folded into loads
  // Twelve named accumulators with distinct starts (equal ones would be merged into one chain,
  // and an array of them ends up in memory at -O3).
  __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f);
  __m256 a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f);
  __m256 a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f), a8 = _mm256_set1_ps(0.18f);
  __m256 a9 = _mm256_set1_ps(0.19f), a10 = _mm256_set1_ps(0.20f), a11 = _mm256_set1_ps(0.21f);
  std::vector<double> rates;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < rounds; ++r) {
      a0 = _mm256_fmadd_ps(a0, mul, add), a1 = _mm256_fmadd_ps(a1, mul, add);
      a2 = _mm256_fmadd_ps(a2, mul, add), a3 = _mm256_fmadd_ps(a3, mul, add);
      a4 = _mm256_fmadd_ps(a4, mul, add), a5 = _mm256_fmadd_ps(a5, mul, add);
      a6 = _mm256_fmadd_ps(a6, mul, add), a7 = _mm256_fmadd_ps(a7, mul, add);
      a8 = _mm256_fmadd_ps(a8, mul, add), a9 = _mm256_fmadd_ps(a9, mul, add);
      a10 = _mm256_fmadd_ps(a10, mul, add), a11 = _mm256_fmadd_ps(a11, mul, add);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(rounds) * 12 * 8 * 2 / seconds / 1e9);
  }
  const __m256 sum =
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                  _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
                    _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  if (_mm256_cvtss_f32(sum) == 1234.5f) std::printf(" ");  // keeps the chains alive
  return median(rates);
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
