// Lab of the CPU many-chain sampler (host/cpu_minibatch.cpp's sample_chains): where a chain-step's
// time goes. sample_chains with its part clocks (cpu::SamplerPartSeconds: the two products and
// the two passes after them, by thread CPU time) runs bench_all's workload 2 (N(0, 0.05^2) weights,
// visible biases from the digits, 2048 chains from random_initial_states(seed 7), K steps under
// key (7, sample)), checks that it ends in the same states as without the clocks (SHA-256 of the
// states), and prints each part's time per chain-step with its rate against its limit: the
// products' FLOP/s, counted as dense GEMMs, against one core's FMA peak (bench/peak.hpp; the
// product to the hidden units sums W's active rows where the states are sparse, which can exceed
// it: cpu::hidden_products), the passes' ns per unit against the same
// pass alone on one row in L1. The runs without and with the clocks alternate; medians of the
// repeats.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "bench/flags.hpp"
#include "bench/peak.hpp"
#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/sha256.hpp"
#include "host/single_threaded_blas.hpp"
#include "kernels/rbm_math.h"

namespace rbm {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// This thread's CPU seconds: the parts are timed by it, so that time another process takes from
// the shared cores does not count (the walls are timed by the steady clock).
double cpu_now() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// bench/peak.hpp's FMA peak per core in GFLOP/s, with `threads` threads at once, timed by each
// thread's CPU clock: measure_core_fma_peak runs 3 x rounds rounds of 12 FMAs of fma_peak_lanes()
// lanes (2 FLOPs a lane each).
double cpu_timed_core_peak(int threads, int64_t rounds = 50'000'000) {
  std::vector<double> rates(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&rates, w, rounds] {
      const double t = cpu_now();
      (void)bench::measure_core_fma_peak(rounds);
      rates[static_cast<size_t>(w)] = 3.0 * static_cast<double>(rounds) * 12 *
                                      bench::fma_peak_lanes() * 2 / (cpu_now() - t) / 1e9;
    });
  }
  for (std::thread& w : workers) w.join();
  return bench::median(rates);
}

// One pass alone on one row of n units in L1, CPU ns per unit (median of 5 runs of `reps` rows).
template <typename Pass>
double ns_per_unit(int n, int64_t reps, Pass pass) {
  std::vector<double> times;
  for (int r = 0; r < 5; ++r) {
    const double t = cpu_now();
    for (int64_t i = 0; i < reps; ++i) pass(i);
    times.push_back((cpu_now() - t) / static_cast<double>(reps) / n * 1e9);
  }
  return bench::median(times);
}

// bench_all's sampled model: N(0, 0.05^2) weights, visible biases from the digits.
Params sampler_params(const Dataset& digits, int H) {
  Recipe init;
  init.hidden = H;
  init.init_std = 0.05f;
  init.visible_bias = true;
  return init_params(init, digits);
}

struct Options {
  int64_t chains = 2048, steps = 100;
  int repeats = 5;
  std::string data = "data/mnist";
};

void run(const Options& o, const Dataset& digits, int H, int threads, double core_peak) {
  const Params p = sampler_params(digits, H);
  const int d = p.visible;
  const uint64_t key = philox_key(7, Purpose::sample);
  const std::vector<uint8_t> start = random_initial_states(o.chains, d, 7);
  const double chain_steps = static_cast<double>(o.chains) * static_cast<double>(o.steps);

  std::vector<double> product, timed_wall, gh, ph, gv, pv;
  std::string product_hash, timed_hash;
  for (int r = 0; r < o.repeats; ++r) {
    std::vector<uint8_t> s = start;
    auto t = Clock::now();
    cpu::sample_chains(p, key, s.data(), o.chains, 0, o.steps, threads);
    product.push_back(since(t));
    product_hash = sha256_hex(std::span<const uint8_t>(s));
    s = start;
    cpu::SamplerPartSeconds q;
    t = Clock::now();
    cpu::sample_chains(p, key, s.data(), o.chains, 0, o.steps, threads, 0, &q);
    timed_wall.push_back(since(t));
    gh.push_back(q.hidden_product), ph.push_back(q.pass_hidden), gv.push_back(q.visible_product),
        pv.push_back(q.pass_visible);
    timed_hash = sha256_hex(std::span<const uint8_t>(s));
  }
  const auto us = [&](const std::vector<double>& v) {
    return bench::median(v) / chain_steps * 1e6;
  };
  const double flops = 2.0 * d * H;  // one dense product's FLOPs per chain
  std::printf("H %d, %lld chains, K %lld, %d thread(s), medians of %d\n", H,
              static_cast<long long>(o.chains), static_cast<long long>(o.steps), threads,
              o.repeats);
  std::printf(
      "  sample_chains wall %.4f s (%.3g chain-steps/s); with its part clocks %.4f s; states %s\n",
      bench::median(product), chain_steps / bench::median(product), bench::median(timed_wall),
      product_hash == timed_hash ? "identical" : "DIFFER");
  std::printf("  states sha256 %s\n", product_hash.c_str());
  const double total = us(gh) + us(ph) + us(gv) + us(pv);
  std::printf(
      "  thread-CPU us per chain-step: product_h %.4f product_v %.4f post_h %.4f post_v %.4f "
      "(sum %.4f; products %.1f%%, post %.1f%%)\n",
      us(gh), us(gv), us(ph), us(pv), total, 100 * (us(gh) + us(gv)) / total,
      100 * (us(ph) + us(pv)) / total);
  std::printf(
      "  as dense GEMMs: product_h %.1f GFLOP/s/thread (%.1f%% of the core peak %.1f), product_v "
      "%.1f (%.1f%%)\n",
      flops / us(gh) / 1e3, 100 * flops / us(gh) / 1e3 / core_peak, core_peak, flops / us(gv) / 1e3,
      100 * flops / us(gv) / 1e3 / core_peak);
  std::printf("  post ns/unit in the run: hidden %.3f visible %.3f\n", us(ph) * 1e3 / H,
              us(pv) * 1e3 / d);
}

// The passes alone on one row in L1, and the GEMMs alone on one tile, on this thread.
void alone(const Dataset& digits, int H, double core_peak) {
  const Params p = sampler_params(digits, H);
  const int d = p.visible;
  for (const int n : {H, d}) {
    std::vector<float> t(static_cast<size_t>(n), 0.3f), u(static_cast<size_t>(n)), bias(t);
    const int64_t reps = 20'000'000 / n;
    const double sig = ns_per_unit(n, reps, [&](int64_t) {
      for (int k = 0; k < n; ++k) t[k] = sigmoid(t[k] * 1e-3f + bias[k]);
    });
    const double phil = ns_per_unit(n, reps, [&](int64_t i) {
      cpu::philox_uniforms(1, static_cast<uint64_t>(i), 3, 0, n, u.data());
    });
    std::string paths;  // the draws on each path this CPU runs (philox above: the default)
    for (const cpu::Simd simd : {cpu::Simd::scalar, cpu::Simd::avx2, cpu::Simd::avx512}) {
      if (!cpu::simd_usable(simd)) continue;
      const double ns = ns_per_unit(n, reps, [&](int64_t i) {
        cpu::philox_uniforms(simd, 1, static_cast<uint64_t>(i), 3, 0, n, u.data());
      });
      char text[64];
      std::snprintf(text, sizeof text, "%s%s %.3f", paths.empty() ? "" : ", ", cpu::simd_name(simd),
                    ns);
      paths += text;
    }
    const double cmp = ns_per_unit(n, reps, [&](int64_t) {
      for (int k = 0; k < n; ++k) t[k] = u[k] < t[k] ? 1.0f : 0.0f;
      __asm__ volatile("" ::: "memory");
    });
    const double all = ns_per_unit(n, reps, [&](int64_t i) {
      cpu::sigmoid_bernoulli_rows(t.data(), 1, n, bias.data(), 1, static_cast<uint64_t>(i), 3,
                                  nullptr, t.data(), u.data());
      for (int k = 0; k < n; ++k) t[k] = t[k] * 0.5f - 0.2f;  // keep the inputs varied
    });
    std::printf(
        "  alone, n %d: sigmoid %.3f ns/unit, philox %.3f (%s: %s), compare %.3f, the pass %.3f "
        "(includes a rescale)\n",
        n, sig, phil, cpu::simd_name(cpu::simd()), paths.c_str(), cmp, all);
  }
  const int64_t rows = cpu::kSampleTile;
  std::vector<float> X(static_cast<size_t>(rows * d), 1.0f),
      Hs(static_cast<size_t>(rows * H), 1.0f);
  for (size_t k = 0; k < X.size(); k += 3) X[k] = 0.0f;
  const double gh = ns_per_unit(1, 200, [&](int64_t) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), H, d, 1.0f,
                X.data(), d, p.W.data(), H, 0.0f, Hs.data(), H);
  });
  const double gv = ns_per_unit(1, 200, [&](int64_t) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), d, H, 1.0f,
                Hs.data(), H, p.W.data(), H, 0.0f, X.data(), d);
  });
  const double flops = 2.0 * static_cast<double>(rows) * d * H;
  std::printf(
      "  alone, one tile (%lld rows): gemm_h %.1f GFLOP/s (%.1f%% of %.1f), gemm_v %.1f "
      "(%.1f%%)\n",
      static_cast<long long>(rows), flops / gh, 100 * flops / gh / core_peak, core_peak, flops / gv,
      100 * flops / gv / core_peak);
}

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  using namespace rbm;
  Options o;
  std::vector<int> hidden = {100, 500}, thread_counts = {1, 2};
  bool skip_alone = false;
  int one_hidden = 0, one_thread_count = 0;  // --hidden, --threads: one value instead of the lists
  const std::vector<bench::Flag> flags = {
      bench::int_flag("--chains", o.chains, int64_t{1}, int64_t{1} << 20),
      bench::int_flag("--steps", o.steps, int64_t{2}, int64_t{100000}),
      bench::int_flag("--repeats", o.repeats, 1, 1000),
      {"--data", [&](const std::string& v) { o.data = v; }},
      bench::int_flag("--hidden", one_hidden, 1, 100000),
      bench::int_flag("--threads", one_thread_count, 1, 1024),
      bench::switch_flag("--no-alone", [&] { skip_alone = true; }),
  };
  const std::string usage =
      "sampler_lab [--chains N] [--steps K] [--repeats R] [--hidden H] [--threads T] [--no-alone] "
      "[--data DIR]";
  return bench::bench_main(argc, argv, flags, usage, [&] {
    if (one_hidden > 0) hidden = {one_hidden};
    if (one_thread_count > 0) thread_counts = {one_thread_count};
    const Dataset digits = load_mnist(o.data, std::nullopt, Split::train);
    const SingleThreadedBlas one_blas_thread;
    std::printf("openblas %s, core %s\n", openblas_get_config(), openblas_get_corename());
    const double core_peak = cpu_timed_core_peak(1), both_peak = cpu_timed_core_peak(2);
    std::printf("fma peak per core, by CPU time: one thread %.1f GFLOP/s, two at once %.1f each\n",
                core_peak, both_peak);
    for (const int H : hidden) {
      for (const int threads : thread_counts) {
        run(o, digits, H, threads, threads == 1 ? core_peak : both_peak);
      }
      if (!skip_alone) alone(digits, H, core_peak);
    }
    return 0;
  });
}
