// Issue 5 on the GPU, against the CPU reference: the epoch permutation sorted on the device,
// minibatch CD and PCD updates (momentum, weight decay, linear decay, visible biases) and their
// training state, the many-chain sampler chain by chain (batched, packed), its memory check, a
// million chains, and TF32 tensor cores against fp32 by statistics. Every test skips without a
// device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/minibatch.hpp"
#include "kernels/cuda_backend.hpp"
#include "kernels/minibatch.cuh"
#include "kernels/philox.h"
#include "tests/cd_reference.hpp"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/gibbs_reference.hpp"
#include "tests/minibatch_reference.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

using test::max_abs;
using test::max_abs_diff;
using test::patterned_images;

TEST(CudaMinibatch, DevicePermutationMatchesHost) {
  RBM_REQUIRE_CUDA_DEVICE();
  for (const auto& [rows, epoch] : std::vector<std::pair<int64_t, int64_t>>{
           {60000, 0}, {60000, 7}, {7141, 3}, {5, 1}, {1, 0}}) {
    EXPECT_EQ(cuda::device_epoch_permutation(11, epoch, rows, nullptr),
              epoch_permutation(11, epoch, rows))
        << rows << " rows, epoch " << epoch;
  }
}

// The recipe of the comparisons: PCD or CD-2 with everything on, 12 updates over three epochs.
Recipe full_recipe(bool pcd, uint32_t seed) {
  Recipe r;
  r.batch = 8;
  r.k = 2;
  r.lr = 0.1f;
  r.momentum = 0.5f;
  r.weight_decay = 1e-3f;
  r.lr_decay = LrDecay::linear;
  r.epochs = 3;
  r.pcd = pcd;
  r.chains = pcd ? 10 : 0;
  r.seed = seed;
  return r;
}

// The builds differ only in float summation order (cuBLAS against OpenBLAS): probabilities by
// ~1e-7, so a seed whose double reference keeps every draw 2e-6 (20 times that) from its
// probability makes the same draws on both; then W, b, a and the velocities agree to 1e-5
// relative and the chains exactly. A draw named differently would move W by ~lr: far outside.
// Ternary hidden units (type): the same, with each draw's two thresholds kept 2e-6 away.
void expect_cuda_matches_cpu(bool pcd, HiddenType type = HiddenType::binary) {
  const Dataset data = patterned_images(32, 32, 5);
  Params start = test::random_params(32, 12, 0.4f, 77, /*visible_bias=*/true);
  start.hidden_type = type;
  constexpr int64_t kUpdates = 12;
  Recipe recipe;
  double margin = 0.0;
  for (uint32_t seed = 100; seed < 300 && margin < test::kMargin; ++seed) {
    recipe = full_recipe(pcd, seed);
    test::MinibatchReference ref(start, data, recipe);
    for (int64_t u = 0; u < kUpdates; ++u) ref.update(u);
    margin = ref.min_margin;
  }
  ASSERT_GE(margin, test::kMargin) << "no seed in [100, 300) keeps every draw clear of ties";
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  for (Backend* be : {cpu.get(), gpu.get()}) {
    be->stage(data);
    be->set_params(start);
    be->train_minibatch(recipe, 0, 5);
    be->train_minibatch(recipe, 5, kUpdates - 5);
  }
  // max |got - want| relative to max |want|, or to `floor` where want is all near 0 (b and a
  // start at 0 or near it; the floor keeps their rounding from reading as large).
  const auto relative = [](const std::vector<float>& got, const std::vector<float>& want,
                           double floor) {
    return max_abs_diff(got, want) / std::max(max_abs(want), floor);
  };
  const Params want = cpu->get_params(), got = gpu->get_params();
  EXPECT_LE(relative(got.W, want.W, 0.0), test::kTrainRelTol);
  EXPECT_LE(relative(got.b, want.b, 1e-2), test::kTrainRelTol);
  EXPECT_LE(relative(got.a, want.a, 1e-2), test::kTrainRelTol);
  // The velocities are gradients, differences of the two phases' sums: their rounding is relative
  // to the sums, up to ~10 times max |v| after cancellation, so 1e-4. A flipped draw moves an
  // entry by ~1 / batch, > 1e-2 of max |v|: still two orders of magnitude apart.
  const TrainingState cpu_state = cpu->get_training_state(), gpu_state = gpu->get_training_state();
  EXPECT_LE(relative(gpu_state.vW, cpu_state.vW, 1e-3), 1e-4);
  EXPECT_LE(relative(gpu_state.vb, cpu_state.vb, 1e-3), 1e-4);
  EXPECT_LE(relative(gpu_state.va, cpu_state.va, 1e-3), 1e-4);
  EXPECT_EQ(gpu_state.n_chains, cpu_state.n_chains);
  EXPECT_EQ(gpu_state.chains, cpu_state.chains);
  EXPECT_NE(got.W, start.W);
  EXPECT_EQ(got.hidden_type, type);
}

TEST(CudaMinibatch, CdMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  expect_cuda_matches_cpu(false);
}

TEST(CudaMinibatch, PcdMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  expect_cuda_matches_cpu(true);
}

TEST(CudaMinibatch, TernaryCdMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  expect_cuda_matches_cpu(false, HiddenType::ternary);
}

TEST(CudaMinibatch, TernaryPcdMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  expect_cuda_matches_cpu(true, HiddenType::ternary);
}

// The device is deterministic (no atomics in cuBLAS or our kernels): pieces equal one call bit for
// bit, and a state read back and set on a fresh backend continues exactly.
TEST(CudaMinibatch, PiecesAndTrainingStateRoundTrip) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Dataset data = patterned_images(64, 100, 9);
  const Params start = test::random_params(64, 20, 0.3f, 5, /*visible_bias=*/true);
  const Recipe recipe = full_recipe(true, 21);
  const std::unique_ptr<Backend> whole = make_cuda_backend(), first = make_cuda_backend(),
                                 resumed = make_cuda_backend();
  for (Backend* be : {whole.get(), first.get(), resumed.get()}) be->stage(data);
  whole->set_params(start);
  whole->train_minibatch(recipe, 0, 9);
  first->set_params(start);
  first->train_minibatch(recipe, 0, 4);
  resumed->set_params(first->get_params());
  resumed->set_training_state(first->get_training_state());
  resumed->train_minibatch(recipe, 4, 5);
  EXPECT_EQ(resumed->get_params().W, whole->get_params().W);
  EXPECT_EQ(resumed->get_params().a, whole->get_params().a);
  EXPECT_EQ(resumed->get_training_state(), whole->get_training_state());
  TrainingState bad = whole->get_training_state();
  bad.vb.push_back(0.0f);
  EXPECT_THROW(resumed->set_training_state(bad), InputError);
}

// The sampler against the CPU's, chain by chain, on an MNIST-sized model (noisy rings: every pixel
// live). The double reference (tests/gibbs_reference.hpp) says which chains keep every draw
// test::kMargin from its probability; rounding cannot part those, so each must end in the
// reference's state on the GPU, unbatched, in batches of 384 and packed (0 mismatches), as on the
// CPU (GibbsReference.CpuSamplerMatchesClearChains). A chain
// makes 3 x (784 + 100) draws, each within 2e-6 of its probability with probability 4e-6, so about
// 1% of chains are left out. The seed is the first from 77 that keeps the chains at the batches'
// edges (the first and last of each batch of 384, the last of all) clear, so a chain named by its
// row within a batch, or a short last batch handled wrongly, fails. Packing changes no arithmetic:
// packed and unpacked agree in every chain. Ternary hidden units too (two thresholds per draw).
TEST(CudaSampler, ChainsMatchCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    SCOPED_TRACE(hidden_type_name(type));
    const test::SamplerChainsCase chains_case = test::sampler_chains_case(type);
    const auto& [params, n, first_step, steps, initial, seed, refs] = chains_case;
    // The CPU backend's chains match the same references (GibbsReference.CpuSamplerMatches-
    // ClearChains, in the CPU suite).
    const int64_t clear =
        std::count_if(refs.begin(), refs.end(),
                      [](const test::ChainReference& r) { return r.min_margin >= test::kMargin; });
    ASSERT_GE(clear, n * 95 / 100) << "too few chains clear of ties to compare";
    std::vector<std::vector<uint8_t>> got;
    for (const CudaOptions options :
         {CudaOptions{}, CudaOptions{.gibbs_batch_chains = 384},
          CudaOptions{.gibbs_batch_chains = 384, .packed_states = true}}) {
      const std::unique_ptr<Backend> gpu = make_cuda_backend(options);
      gpu->set_params(params);
      std::vector<uint8_t> states = initial;
      gpu->gibbs(states, n, seed, first_step, steps);
      got.push_back(states);
      EXPECT_EQ(test::compare_clear_chains(refs, states, 784).mismatched, 0)
          << "batch " << options.gibbs_batch_chains << (options.packed_states ? ", packed" : "");
    }
    EXPECT_EQ(got[2], got[1]) << "packed";
    EXPECT_NE(got[0], initial);
    // In blocks of chains named by first_chain (sample's way with many chains): the same chains.
    const std::unique_ptr<Backend> gpu = make_cuda_backend();
    gpu->set_params(params);
    std::vector<uint8_t> blocks = initial;
    for (int64_t first = 0; first < n; first += 384) {
      const int64_t count = std::min<int64_t>(384, n - first);
      gpu->gibbs(std::span<uint8_t>(blocks).subspan(static_cast<size_t>(first) * 784,
                                                    static_cast<size_t>(count) * 784),
                 count, seed, first_step, steps, first);
    }
    EXPECT_EQ(test::compare_clear_chains(refs, blocks, 784).mismatched, 0) << "blocks of chains";
  }
}

// By default gibbs() runs the chains in batches that one cuBLAS operand holds (at most 2^31 - 1
// floats, 8.6 GB, and a device has room for that), so a refusal needs a batch asked for.
TEST(CudaSampler, RefusesChainsThatDoNotFit) {
  RBM_REQUIRE_CUDA_DEVICE();
  // d = 16, H = 100000: a million chains at once need (16 + 100000) floats each, 400 GB.
  const Params params = test::random_params(16, 100000, 0.01f, 1, /*visible_bias=*/false);
  const std::unique_ptr<Backend> gpu =
      make_cuda_backend(CudaOptions{.gibbs_batch_chains = 1'000'000});
  gpu->set_params(params);
  const int64_t n = 1'000'000;
  std::vector<uint8_t> states(static_cast<size_t>(n) * 16, 0);
  try {
    gpu->gibbs(states, n, 1, 0, 1);
    ADD_FAILURE() << "a million chains of H = 100000 were not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("MiB of device memory"), std::string::npos) << e.what();
  }
}

// Training asks for its memory before allocating: 1e8 PCD chains of 784 pixels (the CLI's
// largest --chains) need ~390 GB, more than any device; refused with what it needs, and the
// backend trains a recipe that fits afterwards.
TEST(CudaMinibatch, RefusesChainsThatDoNotFit) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Dataset data = patterned_images(784, 20, 1);
  const Params start = test::random_params(784, 100, 0.01f, 3, /*visible_bias=*/true);
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  gpu->stage(data);
  gpu->set_params(start);
  Recipe recipe = full_recipe(true, 1);
  recipe.chains = 100'000'000;
  try {
    gpu->train_minibatch(recipe, 0, 1);
    ADD_FAILURE() << "1e8 PCD chains of 784 pixels were not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("MiB of device memory"), std::string::npos) << e.what();
  }
  recipe.chains = 10;
  gpu->train_minibatch(recipe, 0, 2);
  EXPECT_NE(gpu->get_params().W, start.W);
}

// The size: a million chains of an MNIST-sized model, all resident at once, from all-zero
// states, 2 steps. Two checks, neither a bare tolerance:
// - Chain by chain against the double reference (tests/gibbs_reference.hpp) for the first 65536
//   chains (which the CPU sampler runs too) and the last 1024: every chain whose draws all keep
//   test::kMargin from their probabilities cannot part through rounding and must end in the
//   reference's state on both backends (0 mismatches). A chain makes 2 x 884 draws, each within
//   2e-6 of its probability with probability 4e-6, so about 0.7% of chains are left out; the seed
//   is the first from 3 that keeps chains 0, 65535, 999999 clear, so the last chain is compared.
// - Every chain got its own draws and was written: no chain is still all zero and no two chains
//   are equal. With no biases, |W h|_i <= m_i = max(sum of W_i's positive entries, of its negative
//   ones' magnitudes), so no state has probability above B = prod_i sigm(m_i); a correct sampler
//   fails only with probability <= (N + N^2 / 2) B, asserted below 1e-9 before it is relied on.
TEST(CudaSampler, AMillionChains) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Dataset data = patterned_images(784, 10, 4);
  Recipe init;
  init.init_std = 0.05f;
  const Params params = init_params(init, data);
  ASSERT_TRUE(params.a.empty());
  const int64_t n = 1'000'000, d = 784, compared = 65536, tail = 1024;
  double log_bound = 0.0;  // log B
  for (int64_t i = 0; i < d; ++i) {
    double positive = 0.0, negative = 0.0;
    for (int j = 0; j < params.hidden; ++j) {
      const double w = params.W[static_cast<size_t>(i * params.hidden + j)];
      (w > 0.0 ? positive : negative) += std::fabs(w);
    }
    log_bound += -std::log1p(std::exp(-std::max(positive, negative)));
  }
  const double pairs = static_cast<double>(n) + 0.5 * static_cast<double>(n) * n;
  ASSERT_LT(std::log(pairs) + log_bound, std::log(1e-9)) << "log B = " << log_bound;

  std::vector<int64_t> checked;  // chains 0 .. compared - 1, then the last `tail`
  for (int64_t c = 0; c < compared; ++c) checked.push_back(c);
  for (int64_t c = n - tail; c < n; ++c) checked.push_back(c);
  const std::vector<int64_t> edges = {0, compared - 1, n - 1};
  const uint32_t seed =
      test::seed_clearing_chains(params, 3, edges, std::vector<uint8_t>(edges.size() * d, 0), 0, 2);
  const std::vector<test::ChainReference> refs = test::sampler_reference(
      params, seed, checked, std::vector<uint8_t>(checked.size() * d, 0), 0, 2);

  std::vector<uint8_t> states(static_cast<size_t>(n * d), 0);
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  gpu->set_params(params);
  gpu->gibbs(states, n, seed, 0, 2);
  for (const uint8_t s : states) ASSERT_LE(s, 1);

  std::vector<uint8_t> want(static_cast<size_t>(compared * d), 0);
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  cpu->set_params(params);
  cpu->gibbs(want, compared, seed, 0, 2);
  const std::vector<test::ChainReference> head(refs.begin(), refs.begin() + compared);
  const test::ChainComparison on_cpu = test::compare_clear_chains(head, want, d);
  const test::ChainComparison on_gpu =
      test::compare_clear_chains(refs, test::rows_of(states, d, checked), d);
  std::printf("seed %u: %lld of %lld checked chains clear of ties\n", seed,
              static_cast<long long>(on_gpu.clear), static_cast<long long>(checked.size()));
  ASSERT_GE(on_gpu.clear, static_cast<int64_t>(checked.size()) * 98 / 100);
  EXPECT_EQ(on_cpu.mismatched, 0) << "CPU chains unlike the double reference";
  EXPECT_EQ(on_gpu.mismatched, 0) << "GPU chains unlike the reference";

  std::vector<std::string_view> chains;
  chains.reserve(static_cast<size_t>(n));
  const std::string_view all = {reinterpret_cast<const char*>(states.data()), states.size()};
  const std::string zeros(static_cast<size_t>(d), '\0');
  int64_t untouched = 0;
  for (int64_t c = 0; c < n; ++c) {
    chains.push_back(all.substr(static_cast<size_t>(c * d), static_cast<size_t>(d)));
    untouched += chains.back() == zeros;
  }
  EXPECT_EQ(untouched, 0) << "chains still in their all-zero start";
  std::sort(chains.begin(), chains.end());
  EXPECT_TRUE(std::adjacent_find(chains.begin(), chains.end()) == chains.end())
      << "two chains ended in the same state";
}

// TF32 tensor cores (10-bit mantissas for W) against fp32: per-pixel means of 65536 chains after
// 50 steps from the same states with the same draws, on an MNIST-sized model (noisy rings: every
// pixel's mean is 0.05 or more, so each can move). Each mean has a standard deviation <=
// sqrt(0.25 / N) = 0.002; the two runs share their uniforms, so they differ only where TF32
// moves a probability across its uniform. A pixel whose means differ by more than 0.02 fails:
// 7 standard deviations of the difference even of independent runs, so a correct build fails
// with probability below 784 x 2e-12 = 2e-9. The states must differ somewhere (else TF32 was
// not used).
// And on the tiny model, the TF32 sampler's states against the exact law of the model it samples:
// TF32 rounds W to 10 mantissa bits (x and h, 0 and 1, are exact; the biases are added in fp32
// outside the GEMM), which moves these probabilities by ~1e-3 relative: a chi-square noncentrality
// N sum dp^2 / p against the fp32 law at N = 2^20 of 0.035 (W to nearest) and 0.10 (truncated)
// for this model (computed on the CPU), a bias the 1e-6 bound should not leave to chance. The law
// of W rounded to nearest and of W truncated are both exact candidates (cuBLAS does not say which
// it does), and fp32 too (cuBLAS may pick a kernel without tensor cores for these shapes); the
// smallest of the three statistics is below the statistic against the law the sampler follows,
// so a correct sampler fails with probability < 1e-6 (test::chi_square_limit_1e6(63)) whichever it
// is. The same states scored against a model with 1.5 W must fail.
TEST(CudaSampler, Tf32StatisticsAgreeWithFp32) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Dataset data = test::synthetic_images(64, 6);
  Recipe init;
  init.init_std = 0.1f;
  init.visible_bias = true;
  const Params params = init_params(init, data);
  const int64_t n = 65536;
  const std::vector<uint8_t> initial = random_initial_states(n, 784, 8);
  std::vector<std::vector<double>> means;
  std::vector<std::vector<uint8_t>> final_states;
  for (const bool tf32 : {false, true}) {
    const std::unique_ptr<Backend> gpu = make_cuda_backend(CudaOptions{.tf32 = tf32});
    gpu->set_params(params);
    std::vector<uint8_t> states = initial;
    gpu->gibbs(states, n, 9, 0, 50);
    final_states.push_back(states);
    std::vector<double> mean(784, 0.0);
    for (int64_t c = 0; c < n; ++c) {
      for (int i = 0; i < 784; ++i) mean[i] += states[static_cast<size_t>(c) * 784 + i];
    }
    for (double& m : mean) m /= static_cast<double>(n);
    means.push_back(mean);
  }
  for (int i = 0; i < 784; ++i) EXPECT_NEAR(means[1][i], means[0][i], 0.02) << "pixel " << i;
  EXPECT_NE(final_states[1], final_states[0]) << "the tf32 option changed nothing";

  const Params tiny = test::random_params(6, 4, 1.0f, 12345, /*visible_bias=*/true);
  const int64_t chains = int64_t{1} << 20;
  std::vector<uint8_t> states = random_initial_states(chains, 6, 2718);
  const std::unique_ptr<Backend> gpu = make_cuda_backend(CudaOptions{.tf32 = true});
  gpu->set_params(tiny);
  gpu->gibbs(states, chains, 2718, 0, 200);
  std::vector<double> counts(64, 0.0);
  for (int64_t c = 0; c < chains; ++c) {
    size_t index = 0;
    for (int i = 0; i < 6; ++i) index |= size_t{states[static_cast<size_t>(c) * 6 + i]} << i;
    counts[index] += 1.0;
  }
  // Pearson's statistic of the counts against p (every state expected at least 5 times).
  const auto chi_square = [&](const std::vector<double>& p) {
    double statistic = 0.0;
    for (size_t x = 0; x < p.size(); ++x) {
      const double expected = p[x] * static_cast<double>(chains);
      EXPECT_GE(expected, 5.0);
      statistic += (counts[x] - expected) * (counts[x] - expected) / expected;
    }
    return statistic;
  };
  int ties = 0;
  const double nearest =
      chi_square(visible_distribution(test::with_tf32_weights(tiny, false, &ties)));
  const double truncated = chi_square(visible_distribution(test::with_tf32_weights(tiny, true)));
  const double fp32 = chi_square(visible_distribution(tiny));
  EXPECT_EQ(ties, 0) << "a weight halfway between two TF32 values: ties to even would differ";
  std::printf("tf32 gibbs chi-square: %.2f (W to nearest), %.2f (truncated), %.2f (fp32 W)\n",
              nearest, truncated, fp32);
  EXPECT_LT(std::min({nearest, truncated, fp32}), test::chi_square_limit_1e6(63));
  Params other = tiny;
  for (float& w : other.W) w *= 1.5f;
  EXPECT_GT(chi_square(visible_distribution(other)), test::chi_square_limit_1e6(63));
}

}  // namespace
}  // namespace rbm
