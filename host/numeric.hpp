// Small numeric helpers of the evaluation code: a running log-sum-exp in double, and a loop split
// over the hardware threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

namespace rbm {

// A running log-sum-exp: log(sum exp(v)) without overflow.
struct LogSumExp {
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0.0;  // sum of exp(v - max)
  void add(double v) {
    if (v <= max) {
      sum += std::exp(v - max);
    } else {
      sum = sum * std::exp(max - v) + 1.0;
      max = v;
    }
  }
  void merge(const LogSumExp& other) {
    if (other.sum == 0.0) return;
    add(other.max + std::log(other.sum));
  }
  double value() const { return max + std::log(sum); }
};

inline int64_t thread_count() { return std::max<int64_t>(1, std::thread::hardware_concurrency()); }

// Runs body(worker, begin, end) on [0, n) split in contiguous pieces across the hardware threads
// (worker < thread_count()).
template <typename Body>
void parallel_for(int64_t n, Body body) {
  const int64_t n_threads = std::clamp<int64_t>(thread_count(), 1, std::max<int64_t>(n, 1));
  std::vector<std::thread> workers;
  const int64_t per_thread = (n + n_threads - 1) / n_threads;
  for (int64_t w = 0; w < n_threads; ++w) {
    const int64_t begin = w * per_thread, end = std::min(n, begin + per_thread);
    if (begin < end) workers.emplace_back(body, w, begin, end);
  }
  for (auto& worker : workers) worker.join();
}

}  // namespace rbm
