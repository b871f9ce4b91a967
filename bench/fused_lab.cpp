// Kernel lab of the fused single-sample CD trainer (issue 8): the variants of
// kernels/fused_cd.cu's kernel side by side on the reference recipe (MNIST threes, H 100, CD-3,
// lr 0.005, seed 1). Each is validated against the CPU reference (W, b and a after 200
// iterations from the same initial parameters, without and with visible biases, and with ternary
// hidden units) and timed (25000
// iterations, median of 3, microseconds per iteration, synchronized; the repeats must give the
// same W), each against 8 x 256 (the portable variant with the fewest threads, which rbm_cuda ran
// until 2026-12-04); the line of the variant rbm_cuda runs here (kernels/fused_cd.cu's choice,
// fused_product_variant) ends in "rbm_cuda". Without a usable device it says so in one line and
// exits 0; a variant that fails validation or errs, or 8 x 256 or rbm_cuda's variant refused by the
// device, prints FAIL and the exit status is 1. Then, for each variant that ran, the latency of its
// two barriers (kernels/barrier_probe.hpp) and the share of an iteration they make together.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/flags.hpp"
#include "bench/peak.hpp"
#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/errors.hpp"
#include "host/model.hpp"
#include "tests/cd_reference.hpp"
#ifdef RBM_BENCH_CUDA
#include "kernels/barrier_probe.hpp"
#include "kernels/cuda_backend.hpp"
#endif

namespace rbm {
namespace {

struct Options {
  int64_t iters = 25000;
  int repeats = 3;
  int64_t validate_iters = 200;
  std::string data = "data/mnist";
  Split split = Split::train;
};

#ifdef RBM_BENCH_CUDA

constexpr FusedVariant kVariants[] = {{8, 256}, {8, 512}, {16, 256}, {16, 512}};
constexpr FusedVariant kBaseline = {8, 256};

// Validation with tests/cd_reference.hpp's bound and margin: on a seed whose CPU trajectory keeps
// every draw kMargin from its probability, a correct variant parts from the CPU reference only
// through float summation order, max |dW| / max |W| ~ 1e-7 after 200 iterations; a wrong draw
// (a bug in the named draws, a race between CTAs) moves W by ~1e-2 of max |W|. The bound
// kTrainRelTol = 1e-5 (also on b) tells them apart.
using test::kMargin;
using test::kTrainRelTol;

// Seconds of `iters` iterations after a 100-iteration warm-up; get_params() waits for the device.
double seconds_of(Backend& backend, const Dataset& train, const Params& start,
                  const Recipe& recipe) {
  backend.stage(train);
  backend.set_params(start);
  backend.train_cd(recipe, 0, 100);
  (void)backend.get_params();
  const auto begin = std::chrono::steady_clock::now();
  backend.train_cd(recipe, 100, recipe.iters);
  (void)backend.get_params();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

std::unique_ptr<Backend> make_variant(FusedVariant v) {
  return make_cuda_backend({.engine = CudaEngine::fused, .fused_variant = v});
}

bool same_variant(FusedVariant l, FusedVariant r) {
  return l.cluster_ctas == r.cluster_ctas && l.threads == r.threads;
}

int run(const Options& o) {
  const std::string reason = usable_device_or_reason();
  if (!reason.empty()) {
    std::printf("fused_lab: %s; nothing to measure\n", reason.c_str());
    return 0;
  }
  const Dataset train = load_mnist(o.data, 3, o.split);
  Recipe recipe;  // the reference recipe: H 100, CD-3, lr 0.005, seed 1
  recipe.iters = o.iters;
  const Params start = init_params(recipe, train);

  // Validation cases: the reference recipe, with visible biases (a's update too), and with
  // ternary hidden units (the kernel's other instantiation of every variant).
  struct Check {
    const char* name;
    Recipe recipe;
    Params start, expected;
  };
  std::vector<Check> checks = {
      {"binary", recipe, {}, {}}, {"binary+a", recipe, {}, {}}, {"ternary+a", recipe, {}, {}}};
  checks[1].recipe.visible_bias = checks[2].recipe.visible_bias = true;
  checks[2].recipe.hidden_type = HiddenType::ternary;
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  for (Check& check : checks) {
    check.recipe.seed = test::seed_clear_of_ties(train, check.recipe, o.validate_iters);
    check.start = init_params(check.recipe, train);
    check.expected =
        test::train_in_pieces(*cpu, train, check.start, check.recipe, {o.validate_iters});
  }

  std::printf("device: %s\n", cuda_device_description().c_str());
  std::printf(
      "reference recipe: %lld threes (%s), H %d, CD-%d, lr %g; timing %lld iterations from seed "
      "%u, median of %d (the repeats must agree bit for bit); validation %lld iterations, every "
      "draw >= %g from its probability: max |dW| / max |W|, the same of b and a, <= %g, on",
      static_cast<long long>(train.rows), split_name(o.split), recipe.hidden, recipe.k,
      static_cast<double>(recipe.lr), static_cast<long long>(o.iters), recipe.seed, o.repeats,
      static_cast<long long>(o.validate_iters), kMargin, kTrainRelTol);
  for (const Check& check : checks) std::printf(" %s (seed %u)", check.name, check.recipe.seed);
  std::printf("\n");
  std::printf("\n%-10s %-6s %11s %10s %12s\n", "variant", "valid", "rel diff", "us/iter",
              "vs 8x256");

  bool all_valid = true;
  double baseline_us = 0.0;
  std::vector<std::pair<FusedVariant, double>> timed;  // the variants that ran, us an iteration
  const FusedVariant chosen = fused_product_variant(train.cols(), recipe.hidden);
  for (const FusedVariant v : kVariants) {
    const std::string name = std::to_string(v.cluster_ctas) + "x" + std::to_string(v.threads);
    const bool baseline = same_variant(v, kBaseline), product = same_variant(v, chosen);
    const bool must_run = baseline || product;
    std::string refused, failed;
    double diff = 0.0, us = 0.0;
    try {
      std::unique_ptr<Backend> gpu = make_variant(v);
      for (const Check& check : checks) {
        const test::TrainedDifference d = test::trained_difference(
            test::train_in_pieces(*gpu, train, check.start, check.recipe, {o.validate_iters}),
            check.expected, check.recipe);
        diff = std::max({diff, d.W, d.b, d.a});
      }
      // The timed runs start from the same parameters: a race would show as repeats that differ.
      std::vector<double> times;
      std::vector<float> first_W;
      for (int r = 0; r < o.repeats; ++r) {
        times.push_back(seconds_of(*gpu, train, start, recipe));
        const std::vector<float> W = gpu->get_params().W;
        if (!all_finite(W)) failed = "W not finite after the timed run";
        if (r == 0) first_W = W;
        if (W != first_W) failed = "the timed repeats gave different W";
      }
      us = 1e6 * bench::median(times) / static_cast<double>(o.iters);
    } catch (const InputError& e) {  // the variant refused this device or shape (train_cd)
      refused = e.what();
    } catch (const std::exception& e) {
      failed = e.what();
    }
    if (!refused.empty() && !must_run) {
      std::printf("%-10s %-6s %s\n", name.c_str(), "SKIP", refused.c_str());
      continue;
    }
    if (!refused.empty() || !failed.empty()) {  // those two must run, and nothing may fail
      all_valid = false;
      std::printf("%-10s %-6s %s\n", name.c_str(), "FAIL", (refused + failed).c_str());
      continue;
    }
    const bool valid = diff <= kTrainRelTol;
    all_valid = all_valid && valid;
    if (baseline) baseline_us = us;
    timed.emplace_back(v, us);
    std::printf("%-10s %-6s %11.3g %10.3f ", name.c_str(), valid ? "ok" : "FAIL", diff, us);
    if (baseline_us > 0) {
      std::printf("%11.2fx", baseline_us / us);  // > 1: faster than 8 x 256
    } else {
      std::printf("%12s", "-");
    }
    std::printf("%s\n", product ? "  rbm_cuda" : "");
  }
  // What the barriers alone cost: an iteration of CD-k is a chain of phases with 5 + 4k
  // __syncthreads and 1 + k cluster.sync between them (kernels/fused_cd_cta.h), 17 and 4 at CD-3.
  const int cta_barriers = 5 + 4 * recipe.k, cluster_barriers = 1 + recipe.k;
  std::printf(
      "\nbarriers alone (kernels/barrier_probe.cu: one cluster, 20000 and 40000 in a loop; "
      "an iteration has %d __syncthreads and %d cluster.sync):\n",
      cta_barriers, cluster_barriers);
  for (const auto& [v, us] : timed) {
    try {
      const BarrierLatency latency = measure_barrier_latency(v.cluster_ctas, v.threads, 20000);
      const double barrier_us =
          (cta_barriers * latency.cta_ns + cluster_barriers * latency.cluster_ns) / 1e3;
      std::printf(
          "%2dx%-4d  __syncthreads %6.1f ns, cluster.sync %6.1f ns: %6.2f us of the "
          "iteration's %.2f (%.0f%%)\n",
          v.cluster_ctas, v.threads, latency.cta_ns, latency.cluster_ns, barrier_us, us,
          100.0 * barrier_us / us);
    } catch (const std::exception& e) {
      std::printf("%2dx%-4d  %s\n", v.cluster_ctas, v.threads, e.what());
    }
  }
  return all_valid ? 0 : 1;
}

#else

int run(const Options&) {
  std::printf("fused_lab: built without CUDA; nothing to measure\n");
  return 0;
}

#endif

}  // namespace
}  // namespace rbm

int main(int argc, char** argv) {
  rbm::Options o;
  return rbm::bench::bench_main(
      argc, argv,
      {rbm::bench::int_flag<int64_t>("--iters", o.iters, 1, int64_t{1} << 40),
       rbm::bench::int_flag("--repeats", o.repeats, 1, 1000),
       rbm::bench::int_flag<int64_t>("--validate-iters", o.validate_iters, 1, 1'000'000),
       {"--data", [&](const std::string& v) { o.data = v; }},
       {"--split", [&](const std::string& v) { o.split = rbm::parse_split(v); }}},
      "fused_lab [--iters N] [--repeats R] [--validate-iters N] [--data DIR] [--split S]",
      [&] { return rbm::run(o); });
}
