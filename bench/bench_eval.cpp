// Google Benchmark of the CPU evaluation routines (host/evaluate.hpp) that eval and every training
// log point run: exact log Z by enumerating the hidden layer, the exact pseudo-log-likelihood of a
// 500-image batch, and the free energy and reconstruction error beside it. Each of the first two
// has two sums: the product of tabled factors (taken whenever no factor can overflow) and the sum
// of softplus (else); both are timed on the same sizes (log Z on the same model; the PLL's
// softplus sum on the model with one weight set to 700, which makes it take that sum), and the
// run ends with the ratio of their medians.
//
//   build/bench_eval [--benchmark_filter=LogZ]      (5 repetitions each; medians, means, spread)
//
// Images: 500 of 784 pixels, each on with probability 0.19 (MNIST threes' mean), weights
// N(0, 0.1^2) (the reference recipe's start; a trained model's are of that size), no visible
// biases. The time of either sum depends on the sizes only, not on the values.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <string>
#include <tuple>
#include <vector>

#include "host/dataset.hpp"
#include "host/evaluate.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"

namespace rbm {
namespace {

constexpr int kVisible = 784;
constexpr int kImages = 500;

Params bench_model(int H, bool softplus_sum) {
  Params p;
  p.visible = kVisible;
  p.hidden = H;
  const uint64_t key = philox_key(3, Purpose::init);
  for (int k = 0; k < kVisible * H; k += 2) {  // Box-Muller, two normals from two uniforms
    const double u1 = philox_uniform(key, 0, 0, static_cast<uint32_t>(k));
    const double u2 = philox_uniform(key, 0, 0, static_cast<uint32_t>(k + 1));
    const double radius = 0.1 * std::sqrt(-2.0 * std::log(u1));
    p.W.push_back(static_cast<float>(radius * std::cos(2.0 * std::numbers::pi * u2)));
    if (k + 1 < kVisible * H) {
      p.W.push_back(static_cast<float>(radius * std::sin(2.0 * std::numbers::pi * u2)));
    }
  }
  p.b.assign(static_cast<size_t>(H), 0.0f);
  // A weight beyond 600 makes the PLL take its sum of softplus.
  if (softplus_sum) p.W[0] = 700.0f;
  return p;
}

Dataset bench_images() {
  Dataset images;
  images.width = images.height = 28;
  images.rows = kImages;
  const uint64_t key = philox_key(4, Purpose::init);
  for (int r = 0; r < kImages; ++r) {
    for (int i = 0; i < kVisible; ++i) {
      images.pixels.push_back(
          static_cast<uint8_t>(philox_uniform(key, static_cast<uint64_t>(r), 0, i) < 0.19f));
    }
    images.labels.push_back(3);
  }
  return images;
}

// Wall time (the routines are multithreaded) in milliseconds, 5 repetitions, their aggregates.
void timed_as_medians(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);
}

// state(0): H; state(1): 1 for the softplus sum. Counter: hidden states enumerated per second.
void BM_ExactLogZ(benchmark::State& state) {
  const int H = static_cast<int>(state.range(0));
  const Params p = bench_model(H, false);
  const LogZSum sum = state.range(1) != 0 ? LogZSum::softplus : LogZSum::products;
  for (auto _ : state) benchmark::DoNotOptimize(exact_log_partition(p, sum));
  state.counters["states/s"] = benchmark::Counter(static_cast<double>(int64_t{1} << H),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ExactLogZ)
    ->ArgNames({"H", "softplus"})
    ->Args({16, 0})
    ->Args({16, 1})
    ->Args({20, 0})
    ->Apply(timed_as_medians);

// state(0): H; state(1): 1 for the softplus sum. Counter: (image, pixel) flips per second.
void BM_PseudoLikelihood(benchmark::State& state) {
  const int H = static_cast<int>(state.range(0));
  const Params p = bench_model(H, state.range(1) != 0);
  const Dataset images = bench_images();
  for (auto _ : state) benchmark::DoNotOptimize(mean_pseudo_log_likelihood(p, images));
  state.counters["flips/s"] = benchmark::Counter(static_cast<double>(kImages) * kVisible,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_PseudoLikelihood)
    ->ArgNames({"H", "softplus"})
    ->Args({100, 0})
    ->Args({100, 1})
    ->Args({500, 0})
    ->Apply(timed_as_medians);

void BM_FreeEnergyAndReconstruction(benchmark::State& state) {
  const Params p = bench_model(static_cast<int>(state.range(0)), false);
  const Dataset images = bench_images();
  for (auto _ : state) {
    benchmark::DoNotOptimize(mean_free_energy(p, images));
    benchmark::DoNotOptimize(reconstruction_error(p, images));
  }
}
BENCHMARK(BM_FreeEnergyAndReconstruction)
    ->ArgNames({"H"})
    ->Arg(100)
    ->Arg(500)
    ->Apply(timed_as_medians);

// The console report, keeping each benchmark's median (or its single run) for the ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      // "BM_ExactLogZ/H:16/softplus:0", without the repetitions and the time type.
      const std::string name = run.run_name.function_name + "/" + run.run_name.args;
      if (run.run_type == Run::RT_Iteration) single_[name] = run.GetAdjustedRealTime();
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
        medians_[name] = run.GetAdjustedRealTime();
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // The softplus sum's time over the products' on the same sizes.
  void print_ratios() const {
    const std::map<std::string, double>& times = medians_.empty() ? single_ : medians_;
    const char* kind = medians_.empty() ? "single runs" : "medians";
    for (const auto& [products, softplus, what] :
         {std::tuple{"BM_ExactLogZ/H:16/softplus:0", "BM_ExactLogZ/H:16/softplus:1",
                     "exact log Z, H 16"},
          std::tuple{"BM_PseudoLikelihood/H:100/softplus:0", "BM_PseudoLikelihood/H:100/softplus:1",
                     "PLL of 500 images, H 100"}}) {
      const auto p = times.find(products), s = times.find(softplus);
      if (p == times.end() || s == times.end()) continue;
      std::printf("%s: the sum of softplus takes %.1f times as long as the product (%s)\n", what,
                  s->second / p->second, kind);
    }
  }

 private:
  std::map<std::string, double> medians_, single_;
};

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  rbm::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
