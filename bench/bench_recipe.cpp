// Benchmark of the reference recipe (single-sample CD-3, H 100, 25000 iterations on threes):
// the CPU build and, when built with CUDA and a device is usable, the CUDA build's GEMV path with
// and without a CUDA graph, in the same run on the same work; optionally the sheet's numpy code.
// Prints medians, microseconds per iteration, FLOPs per iteration and the fraction of the CPU
// core's measured FMA peak, and the speedups.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"
#ifdef RBM_BENCH_CUDA
#include "kernels/cuda_backend.hpp"
#endif

namespace rbm {
namespace {

struct Options {
  int64_t iters = 25000;
  int repeats = 5;
  std::string data = "data/mnist";
  Split split = Split::train;
  bool numpy = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds of `iters` training iterations, the results copied back (which waits for a device).
double time_training(Backend& backend, const Dataset& train, const Recipe& recipe) {
  backend.stage(train);
  backend.set_params(init_params(recipe, train));
  backend.train_cd(recipe, 0, std::min<int64_t>(100, recipe.iters));  // warm-up
  (void)backend.get_params();
  const auto start = std::chrono::steady_clock::now();
  backend.train_cd(recipe, 100, recipe.iters);
  (void)backend.get_params();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One core's fused multiply-add throughput in GFLOP/s (2 FLOPs per lane per FMA): twelve
// independent 8-lane multiply-add chains, enough to cover the FMA latency on both FMA pipes.
// This is the limit the CPU build is measured against.
double measure_core_fma_peak() {
  typedef float v8 __attribute__((vector_size(32)));
  const v8 mul = v8{} + 0.999999f, add = v8{} + 1e-7f;
  v8 a0 = v8{} + 0.1f, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5;
  v8 a6 = a0 + 6, a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11;
  constexpr int64_t kRounds = 100'000'000;
  std::vector<double> rates;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < kRounds; ++r) {
      a0 = a0 * mul + add, a1 = a1 * mul + add, a2 = a2 * mul + add, a3 = a3 * mul + add;
      a4 = a4 * mul + add, a5 = a5 * mul + add, a6 = a6 * mul + add, a7 = a7 * mul + add;
      a8 = a8 * mul + add, a9 = a9 * mul + add, a10 = a10 * mul + add, a11 = a11 * mul + add;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(kRounds) * 12 * 8 * 2 / seconds / 1e9);
  }
  const v8 sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
  if (sum[0] == 1234.5f) std::printf(" ");  // keeps the chains alive
  return median(rates);
}

// Runs the sheet's numpy program once (it takes tens of seconds) and returns its training time.
double time_numpy_sheet(const Options& o) {
  const std::string command =
      "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/sheet_numpy.py --iters " +
      std::to_string(o.iters) + " --split " + split_name(o.split) + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1.0;
  char line[512];
  double seconds = -1.0;
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    if (const char* p = std::strstr(line, "seconds ")) seconds = std::atof(p + 8);
  }
  pclose(pipe);
  return seconds;
}

int run(const Options& o) {
  const Dataset train = load_mnist(o.data, 3, o.split);
  Recipe recipe;
  recipe.iters = o.iters;
  // Operation counts per iteration, k = 3, d = 784, H = 100. A dense implementation does 7
  // matrix-vector products (4 with W', 3 with W) and a rank-2 update: 7 * 2dH + 2 * 2dH FLOPs.
  const double d = 784, H = recipe.hidden, k = recipe.k;
  const double dense_flops = (2 * k + 1) * 2 * d * H + 2 * 2 * d * H;
  // The CPU build uses x as binary: W'x is a sum of |x| rows (|x| = the image's ones, about the
  // data's mean for x0 and similar for the samples), the update touches 2 |x| rows.
  double mean_ones = 0.0;
  for (const uint8_t v : train.pixels) mean_ones += v;
  mean_ones /= static_cast<double>(train.rows);
  const double binary_flops = (k + 1) * mean_ones * H + k * 2 * d * H + 2 * 2 * mean_ones * H;

  std::printf(
      "reference recipe: %lld iterations of single-sample CD-%d, H %d, %lld threes (%s), "
      "median of %d\n",
      static_cast<long long>(o.iters), recipe.k, recipe.hidden, static_cast<long long>(train.rows),
      split_name(o.split), o.repeats);
  std::printf(
      "work per iteration: dense %.3f MFLOP; as the CPU build does it (x binary, "
      "%.0f ones per image) %.3f MFLOP\n",
      dense_flops / 1e6, mean_ones, binary_flops / 1e6);

  struct Row {
    std::string build;
    std::function<std::unique_ptr<Backend>()> make;
    std::string unavailable;
  };
  std::vector<Row> rows = {{"cpu", [] { return make_cpu_backend(); }, ""}};
#ifdef RBM_BENCH_CUDA
  const std::string reason = usable_device_or_reason();
  rows.push_back(
      {"cuda gemv", [] { return make_cuda_backend(CudaOptions{.use_graph = false}); }, reason});
  rows.push_back({"cuda gemv+graph",
                  [] { return make_cuda_backend(CudaOptions{.use_graph = true}); }, reason});
#else
  rows.push_back({"cuda", nullptr, "not built (no CUDA toolkit at configure time)"});
#endif

  std::printf("\n%-18s %10s %10s %12s %10s\n", "build", "median s", "us/iter", "GFLOP/s(bin)",
              "vs cpu");
  double cpu_seconds = 0.0;
  for (const Row& row : rows) {
    if (!row.unavailable.empty()) {
      std::printf("%-18s no device: %s\n", row.build.c_str(), row.unavailable.c_str());
      continue;
    }
    std::unique_ptr<Backend> backend = row.make();
    std::vector<double> times;
    for (int r = 0; r < o.repeats; ++r) times.push_back(time_training(*backend, train, recipe));
    const double seconds = median(times);
    if (row.build == "cpu") cpu_seconds = seconds;
    std::printf("%-18s %10.4f %10.2f %12.2f %9.2fx\n", row.build.c_str(), seconds,
                1e6 * seconds / static_cast<double>(o.iters),
                binary_flops * static_cast<double>(o.iters) / seconds / 1e9, cpu_seconds / seconds);
  }

  const double peak = measure_core_fma_peak();
  const double cpu_rate = binary_flops * static_cast<double>(o.iters) / cpu_seconds / 1e9;
  std::printf(
      "\nCPU limit: one core's measured FMA peak %.1f GFLOP/s (the recipe is a chain of "
      "dependent steps: one core)\n",
      peak);
  std::printf(
      "CPU build: %.1f GFLOP/s of the work it does = %.1f%% of that peak; "
      "%.2f us/iteration against a pure-FMA floor of %.2f us\n",
      cpu_rate, 100.0 * cpu_rate / peak, 1e6 * cpu_seconds / static_cast<double>(o.iters),
      1e6 * binary_flops / (peak * 1e9));
  if (o.numpy) {
    const double numpy_seconds = time_numpy_sheet(o);
    if (numpy_seconds > 0) {
      std::printf(
          "numpy sheet (1 run): %.2f s = %.1f us/iteration; the CPU build is %.1fx "
          "faster\n",
          numpy_seconds, 1e6 * numpy_seconds / static_cast<double>(o.iters),
          numpy_seconds / cpu_seconds);
    } else {
      std::printf("numpy sheet: could not run /usr/bin/python3 bench/sheet_numpy.py\n");
    }
  }
  return 0;
}

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  rbm::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_recipe: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--iters") {
      o.iters = std::atoll(value().c_str());
    } else if (arg == "--repeats") {
      o.repeats = std::atoi(value().c_str());
    } else if (arg == "--data") {
      o.data = value();
    } else if (arg == "--split") {
      o.split = rbm::parse_split(value());
    } else if (arg == "--numpy") {
      o.numpy = true;
    } else {
      std::fprintf(stderr,
                   "usage: bench_recipe [--iters N] [--repeats R] [--data DIR] [--split S] "
                   "[--numpy]\n");
      return 2;
    }
  }
  if (o.iters < 1 || o.repeats < 1) {
    std::fprintf(stderr, "bench_recipe: --iters and --repeats must be positive\n");
    return 2;
  }
  try {
    return rbm::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_recipe: %s\n", e.what());
    return 2;
  }
}
