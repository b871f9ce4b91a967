// Small numeric helpers of the evaluation code: a running log-sum-exp in double, and loops split
// over the CPU build's threads (host/cpu_threads.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "host/cpu_threads.hpp"

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

// Runs body(worker) on `workers` threads (the calling one waits), worker = 0..workers-1; when a
// thread cannot be started, joins those that were and throws.
template <typename Body>
void run_on_threads(int64_t workers, const Body& body) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(workers));
  try {
    for (int64_t w = 0; w < workers; ++w) threads.emplace_back(body, w);
  } catch (...) {
    for (auto& thread : threads) thread.join();
    throw;
  }
  for (auto& thread : threads) thread.join();
}

// Runs body(worker, begin, end) on [0, n) split in contiguous pieces, one per thread
// (cpu_threads(); worker < that). For work whose results do not depend on the split.
template <typename Body>
void parallel_for(int64_t n, Body body) {
  const int64_t n_threads = std::clamp<int64_t>(cpu_threads(), 1, std::max<int64_t>(n, 1));
  const int64_t per_thread = (n + n_threads - 1) / n_threads;
  run_on_threads(n_threads, [&](int64_t w) {
    const int64_t begin = w * per_thread, end = std::min(n, begin + per_thread);
    if (begin < end) body(w, begin, end);
  });
}

// The number of pieces of piece_size that [0, n) is cut into (parallel_pieces).
constexpr int64_t piece_count(int64_t n, int64_t piece_size) {
  return (n + piece_size - 1) / piece_size;
}

// Runs body(piece, begin, end) for each piece [piece * piece_size, min(n, begin + piece_size)) of
// [0, n), thread w taking pieces w, w + T, w + 2 T, ... of T threads. The pieces depend on n alone:
// a sum kept per piece and added up in piece order is the same on any number of threads
// (parallel_for's per-thread sums are not).
template <typename Body>
void parallel_pieces(int64_t n, int64_t piece_size, Body body) {
  const int64_t pieces = piece_count(n, piece_size);
  const int64_t n_threads = std::clamp<int64_t>(cpu_threads(), 1, std::max<int64_t>(pieces, 1));
  run_on_threads(n_threads, [&](int64_t w) {
    for (int64_t piece = w; piece < pieces; piece += n_threads) {
      body(piece, piece * piece_size, std::min(n, (piece + 1) * piece_size));
    }
  });
}

}  // namespace rbm
