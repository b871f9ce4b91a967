// Minibatch CD-k / PCD-k and the GEMM sampler on the CPU (issue 5): the schedule (epoch order,
// learning rate), the update against a double recomputation from the named draws (momentum,
// weight decay, linear decay, visible biases), the minibatch gradient as the mean of single-sample
// gradients, persistent chains, the training state, thread-count independence, and the sampler's
// per-pixel means against enumeration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/checkpoint.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/dataset.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/minibatch.hpp"
#include "kernels/philox.h"
#include "tests/cd_reference.hpp"
#include "tests/checkpoint_util.hpp"
#include "tests/cli_runner.hpp"
#include "tests/minibatch_reference.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

using test::max_abs_diff;
using test::patterned_images;

TEST(MinibatchSchedule, EpochPermutationIsAPermutationAndStable) {
  for (const int64_t rows : {1, 2, 7, 1000, 60000}) {
    const std::vector<uint32_t> p = epoch_permutation(9, 3, rows);
    ASSERT_EQ(static_cast<int64_t>(p.size()), rows);
    std::vector<uint32_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < rows; ++i) ASSERT_EQ(sorted[i], static_cast<uint32_t>(i));
    EXPECT_EQ(p, epoch_permutation(9, 3, rows)) << "the same epoch twice";
    // The order is the indices sorted by their keys.
    for (int64_t q = 1; q < rows; ++q) {
      ASSERT_LT(shuffle_key(9, 3, p[q - 1]), shuffle_key(9, 3, p[q]));
    }
    if (rows >= 7) {
      EXPECT_NE(p, epoch_permutation(9, 4, rows)) << "another epoch";
      EXPECT_NE(p, epoch_permutation(10, 3, rows)) << "another seed";
    }
  }
}

TEST(MinibatchSchedule, LengthsAndLearningRates) {
  Recipe r;
  r.batch = 100;
  r.iters = 77;
  EXPECT_EQ(batches_per_epoch(r, 60000), 600);
  EXPECT_EQ(batches_per_epoch(r, 1099), 10);  // the partial batch is left out
  EXPECT_EQ(total_updates(r, 60000), 77);
  r.epochs = 3;
  EXPECT_EQ(total_updates(r, 60000), 1800);
  r.lr = 0.1f;
  EXPECT_EQ(learning_rate_at(r, 0, 1800), 0.1f);
  EXPECT_EQ(learning_rate_at(r, 1799, 1800), 0.1f);
  r.lr_decay = LrDecay::linear;
  EXPECT_FLOAT_EQ(learning_rate_at(r, 0, 1800), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(r, 900, 1800), 0.05f);
  EXPECT_FLOAT_EQ(learning_rate_at(r, 1799, 1800), 0.1f / 1800);
  EXPECT_EQ(negative_samples(r), 100);
  r.pcd = true;
  EXPECT_EQ(negative_samples(r), 100);
  r.chains = 250;
  EXPECT_EQ(negative_samples(r), 250);
  EXPECT_FALSE(uses_minibatch(Recipe{}));
  EXPECT_TRUE(uses_minibatch(r));
  Recipe momentum_only;
  momentum_only.momentum = 0.5f;
  EXPECT_TRUE(uses_minibatch(momentum_only));
}

TEST(MinibatchSchedule, BadRecipesAreRefused) {
  const auto with = [](auto change) {
    Recipe r;
    r.batch = 10;
    change(r);
    return r;
  };
  EXPECT_NO_THROW(check_minibatch_recipe(with([](Recipe&) {}), 100));
  EXPECT_INPUT_ERROR(check_minibatch_recipe(with([](Recipe& r) { r.batch = 101; }), 100),
                     "--batch 101", "100 training images");
  EXPECT_INPUT_ERROR(check_minibatch_recipe(with([](Recipe& r) { r.chains = 5; }), 100),
                     "--chains needs --pcd");
  EXPECT_INPUT_ERROR(check_minibatch_recipe(with([](Recipe& r) { r.momentum = 1.0f; }), 100),
                     "--momentum");
  EXPECT_INPUT_ERROR(check_minibatch_recipe(with([](Recipe& r) { r.weight_decay = -1.0f; }), 100),
                     "--weight-decay");
  // PCD's chains step updates x k times: 2^31 - 1 at most, counted in updates or in epochs (of 10
  // batches here); CD's chains start anew at each update.
  const auto pcd = [&](int64_t iters, int k, int64_t epochs) {
    return with([&](Recipe& r) {
      r.pcd = true;
      r.iters = iters;
      r.k = k;
      r.epochs = epochs;
    });
  };
  EXPECT_NO_THROW(check_minibatch_recipe(pcd(kMaxPcdSteps, 1, 0), 100));
  EXPECT_INPUT_ERROR(check_minibatch_recipe(pcd(kMaxPcdSteps + 1, 1, 0), 100), "--pcd",
                     "2147483647 Gibbs steps", "2147483648 x 1 = 2147483648");
  EXPECT_NO_THROW(check_minibatch_recipe(pcd(1'000'000, 2147, 0), 100));
  EXPECT_INPUT_ERROR(check_minibatch_recipe(pcd(1'000'000, 2148, 0), 100), "1000000 x 2148");
  EXPECT_INPUT_ERROR(check_minibatch_recipe(pcd(1, 100'000, 3000), 100), "30000 x 100000");
  Recipe cd = pcd(kMaxPcdSteps + 1, 1, 0);
  cd.pcd = false;
  EXPECT_NO_THROW(check_minibatch_recipe(cd, 100));
}

// A recipe exercising everything: PCD or CD-2, momentum, weight decay, linear decay over two
// epochs of 5 batches, visible biases.
Recipe full_recipe(bool pcd, uint32_t seed) {
  Recipe r;
  r.batch = 4;
  r.k = 2;
  r.lr = 0.2f;
  r.momentum = 0.5f;
  r.weight_decay = 0.01f;
  r.lr_decay = LrDecay::linear;
  r.epochs = 2;
  r.pcd = pcd;
  r.chains = pcd ? 6 : 0;
  r.seed = seed;
  return r;
}

// d = 12 images with about one pixel in 8 set, 5 batches of 8 (more rows than sgemv is used for):
// the CPU's products of them sum W's active rows with either of OpenBLAS's kernel families, and
// the products of h use sgemm, where patterned_images (half the pixels set) in batches of 4 use
// sgemv (cpu::sums_active_rows, cpu::kMaxGemvRows; ChainProductsMatchDoubleSums checks each way
// alone).
Dataset sparse_images() {
  std::mt19937 rng(5);
  std::vector<uint32_t> patterns(40);
  for (uint32_t& pattern : patterns) {
    for (int i = 0; i < 12; ++i) pattern |= (rng() % 8 == 0 ? 1u : 0u) << i;
  }
  return test::bit_images(12, patterns);
}

// Seven updates (across the epoch boundary at 5) on the backend against the double reference, on
// a seed whose reference trajectory keeps every draw 1e-4 from its probability (float and double
// then make the same draws; each float result is within a few roundings of the double one).
// sparse: sparse_images() in batches of 8, else patterned_images in batches of 4.
void expect_updates_match_reference(bool pcd, HiddenType type = HiddenType::binary,
                                    bool sparse = false) {
  const Dataset data = sparse ? sparse_images() : patterned_images(12, 20, 7);
  Params start = test::random_params(12, 5, 0.5f, 31, /*visible_bias=*/true);
  start.hidden_type = type;
  int checked = 0;
  for (uint32_t seed = 1; seed <= 30 && checked < 3; ++seed) {
    Recipe recipe = full_recipe(pcd, seed);
    if (sparse) recipe.batch = 8;
    test::MinibatchReference ref(start, data, recipe);
    for (int64_t u = 0; u < 7; ++u) ref.update(u);
    if (ref.min_margin < 1e-4) continue;
    std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->stage(data);
    backend->set_params(start);
    backend->train_minibatch(recipe, 0, 7);
    const Params got = backend->get_params(), want = ref.params();
    EXPECT_LE(max_abs_diff(got.W, want.W), 2e-6) << "seed " << seed;
    EXPECT_LE(max_abs_diff(got.b, want.b), 2e-6) << "seed " << seed;
    EXPECT_LE(max_abs_diff(got.a, want.a), 2e-6) << "seed " << seed;
    const TrainingState state = backend->get_training_state();
    const std::vector<float> vW(ref.vW.begin(), ref.vW.end());
    EXPECT_LE(max_abs_diff(state.vW, vW), 2e-6) << "seed " << seed;
    if (pcd) {
      ASSERT_EQ(state.n_chains, 6);
      std::vector<uint8_t> chains;
      for (const auto& c : ref.chains) chains.insert(chains.end(), c.begin(), c.end());
      EXPECT_EQ(state.chains, chains) << "seed " << seed;
    } else {
      EXPECT_EQ(state.n_chains, 0);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 3) << "too few seeds clear of ties";
}

TEST(Minibatch, CdUpdatesMatchDoubleReference) { expect_updates_match_reference(false); }
TEST(Minibatch, PcdUpdatesMatchDoubleReference) { expect_updates_match_reference(true); }
// Ternary hidden units: G(t) for sigm(t), ternary draws from the same uniforms.
TEST(Minibatch, TernaryCdUpdatesMatchDoubleReference) {
  expect_updates_match_reference(false, HiddenType::ternary);
}
TEST(Minibatch, TernaryPcdUpdatesMatchDoubleReference) {
  expect_updates_match_reference(true, HiddenType::ternary);
}
TEST(Minibatch, SparseImagesCdUpdatesMatchDoubleReference) {
  expect_updates_match_reference(false, HiddenType::binary, /*sparse=*/true);
}
TEST(Minibatch, SparseImagesTernaryPcdUpdatesMatchDoubleReference) {
  expect_updates_match_reference(true, HiddenType::ternary, /*sparse=*/true);
}

// The rule between the two ways of X W at its measured edges (host/cpu_minibatch.cpp), for both
// of OpenBLAS's kernel families: one row is summed at any density; 256 rows under 20.5% ones with
// small-matrix kernels, under 41.6% without; 16 rows under 27.5% and 66.2%.
TEST(Minibatch, SumOfActiveRowsRule) {
  const int d = 1000;
  EXPECT_TRUE(cpu::sums_active_rows(d, 1, d, true));
  EXPECT_TRUE(cpu::sums_active_rows(d, 1, d, false));
  EXPECT_FALSE(cpu::sums_active_rows(2 * d, 2, d, true));  // two all-ones rows
  EXPECT_TRUE(cpu::sums_active_rows(2 * d, 2, d, false));
  EXPECT_TRUE(cpu::sums_active_rows(52399, 256, d, true));  // 5 ones < d (6 + rows)
  EXPECT_FALSE(cpu::sums_active_rows(52400, 256, d, true));
  EXPECT_TRUE(cpu::sums_active_rows(4399, 16, d, true));
  EXPECT_FALSE(cpu::sums_active_rows(4400, 16, d, true));
  EXPECT_TRUE(cpu::sums_active_rows(106599, 256, d, false));  // 5 ones < d (21 + 2 rows)
  EXPECT_FALSE(cpu::sums_active_rows(106600, 256, d, false));
  EXPECT_TRUE(cpu::sums_active_rows(10599, 16, d, false));
  EXPECT_FALSE(cpu::sums_active_rows(10600, 16, d, false));
}

// cpu::hidden_products and visible_products against double sums, on each of their ways: X of one
// pixel in 20 set or all set, 1 to 64 rows (the test checks that both ways of X W ran, the sum of
// active rows and sgemm, with this machine's OpenBLAS kernels), Hs of -1/0/1 on up to
// kMaxGemvRows rows (sgemv) and more (sgemm); H = 37 (8 does not divide it: the last 8 columns
// overlap), 5 (under 8) and 16. Any order of summing n terms is within gamma_n = n u / (1 - n u)
// (u = 2^-24) of the sum, relative to the sum of the terms' magnitudes; each product is held to
// that bound.
TEST(Minibatch, ChainProductsMatchDoubleSums) {
  // got (rows, n_out) against left (rows, n_in) times the matrix whose (k, o) entry is at
  // W[k * k_stride + o * o_stride]: W for X W (k_stride H, o_stride 1), W' for Hs W' (1, H).
  const auto expect_products = [](const std::vector<float>& got, const std::vector<float>& left,
                                  int64_t rows, int n_in, int n_out, const std::vector<float>& W,
                                  size_t k_stride, size_t o_stride, const std::string& what) {
    const double nu = n_in * 0x1p-24, gamma = nu / (1 - nu);
    for (int64_t r = 0; r < rows; ++r) {
      for (int o = 0; o < n_out; ++o) {
        double sum = 0, magnitude = 0;
        for (int k = 0; k < n_in; ++k) {
          const double term = left[r * n_in + k] * W[k * k_stride + o * o_stride];
          sum += term;
          magnitude += std::abs(term);
        }
        ASSERT_LE(std::abs(got[r * n_out + o] - sum), gamma * magnitude)
            << what << ", " << rows << " rows, row " << r << ", output " << o;
      }
    }
  };
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> weight(-1.0f, 1.0f);
  struct Case {
    int64_t rows;
    int one_in;  // each pixel is 1 with probability 1 / one_in
  };
  const Case cases[] = {{1, 20}, {1, 1}, {5, 20}, {64, 20}, {64, 1}, {6, 1}};
  int summed = 0, multiplied = 0;  // cases of each way of X W
  for (const int H : {37, 5, 16}) {
    Params p = test::random_params(200, H, 1.0f, 3, /*visible_bias=*/false);
    for (float& w : p.W) w = weight(rng);
    const int d = p.visible;
    std::vector<int> active(static_cast<size_t>(d));
    for (const Case& c : cases) {
      std::vector<float> X(static_cast<size_t>(c.rows * d));
      int64_t ones = 0;
      for (float& x : X) {
        x = rng() % static_cast<uint32_t>(c.one_in) == 0 ? 1.0f : 0.0f;
        ones += x != 0.0f;
      }
      (cpu::sums_active_rows(ones, c.rows, d, cpu::blas_has_small_matrix_kernels()) ? summed
                                                                                    : multiplied)++;
      std::vector<float> out(static_cast<size_t>(c.rows * H));
      cpu::hidden_products(p, X.data(), c.rows, out.data(), active.data());
      expect_products(out, X, c.rows, d, H, p.W, static_cast<size_t>(H), 1,
                      "X W, H " + std::to_string(H));
      std::vector<float> Hs(static_cast<size_t>(c.rows * H));
      for (float& h : Hs) h = static_cast<float>(static_cast<int>(rng() % 3) - 1);
      std::vector<float> back(static_cast<size_t>(c.rows * d));
      cpu::visible_products(p, Hs.data(), c.rows, back.data());
      expect_products(back, Hs, c.rows, H, d, p.W, 1, static_cast<size_t>(H),
                      "Hs W', H " + std::to_string(H));
    }
  }
  EXPECT_GT(summed, 0);
  EXPECT_GT(multiplied, 0);
}

// The statement: a minibatch gradient is the mean of single-sample gradients. With every
// image the same, single-sample iteration t = u B + r picks that image and names its draws as
// row r of minibatch update u does (host/minibatch.hpp), so with plain SGD the minibatch step
// equals the mean of the B single-sample steps from the same parameters.
void expect_gradient_is_the_mean_of_single_sample_gradients(HiddenType type, int batch_rows = 8,
                                                            int seeds = 10,
                                                            double tolerance = 2e-6) {
  const Dataset data = test::bit_images(
      10, std::vector<uint32_t>(static_cast<size_t>(std::max(16, batch_rows)), 0b1011001110u));
  Params start = test::random_params(10, 4, 0.8f, 17, /*visible_bias=*/true);
  start.hidden_type = type;
  Recipe single;
  single.k = 2;
  single.lr = 0.25f;
  Recipe batch = single;
  batch.batch = batch_rows;
  int checked = 0;
  for (uint32_t seed = 1; seed <= 40 && checked < seeds; ++seed) {
    single.seed = batch.seed = seed;
    const int64_t u = seed % 3;
    double margin = 1.0;
    for (int64_t r = 0; r < batch.batch; ++r) {
      margin = std::min(
          margin,
          test::cd_iteration_reference(start, data, single, u * batch.batch + r).min_margin);
    }
    if (margin < 1e-4) continue;
    std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->stage(data);
    std::vector<double> W(start.W.size(), 0.0), b(start.b.size(), 0.0), a(start.a.size(), 0.0);
    for (int64_t r = 0; r < batch.batch; ++r) {
      backend->set_params(start);
      backend->train_cd(single, u * batch.batch + r, 1);
      const Params p = backend->get_params();
      for (size_t q = 0; q < W.size(); ++q) W[q] += p.W[q] / static_cast<double>(batch.batch);
      for (size_t q = 0; q < b.size(); ++q) b[q] += p.b[q] / static_cast<double>(batch.batch);
      for (size_t q = 0; q < a.size(); ++q) a[q] += p.a[q] / static_cast<double>(batch.batch);
    }
    backend->set_params(start);
    backend->train_minibatch(batch, u, 1);
    const Params got = backend->get_params();
    for (size_t q = 0; q < W.size(); ++q) ASSERT_NEAR(got.W[q], W[q], tolerance) << "seed " << seed;
    for (size_t q = 0; q < b.size(); ++q) ASSERT_NEAR(got.b[q], b[q], tolerance) << "seed " << seed;
    for (size_t q = 0; q < a.size(); ++q) ASSERT_NEAR(got.a[q], a[q], tolerance) << "seed " << seed;
    EXPECT_NE(got.W, start.W);
    ++checked;
  }
  EXPECT_EQ(checked, seeds) << "too few seeds clear of ties";
}

TEST(Minibatch, GradientIsTheMeanOfSingleSampleGradients) {
  expect_gradient_is_the_mean_of_single_sample_gradients(HiddenType::binary);
}
TEST(Minibatch, TernaryGradientIsTheMeanOfSingleSampleGradients) {
  expect_gradient_is_the_mean_of_single_sample_gradients(HiddenType::ternary);
}

// PCD's chains live in the backend between calls: two calls of one update give exactly one call
// of two; the chains are N, not the batch's B, and after an update they are the sampler's k steps
// (under key (seed, train), global steps u k ...) from the chains before it.
TEST(Minibatch, PcdChainsPersistAcrossUpdates) {
  const Dataset data = patterned_images(16, 30, 3);
  const Params start = test::random_params(16, 6, 0.5f, 8, /*visible_bias=*/true);
  Recipe recipe = full_recipe(true, 5);
  recipe.chains = 9;
  recipe.k = 3;
  std::unique_ptr<Backend> one = make_cpu_backend(), two = make_cpu_backend();
  for (Backend* be : {one.get(), two.get()}) {
    be->stage(data);
    be->set_params(start);
  }
  one->train_minibatch(recipe, 0, 2);
  two->train_minibatch(recipe, 0, 1);
  const TrainingState middle = two->get_training_state();
  const Params params_middle = two->get_params();
  two->train_minibatch(recipe, 1, 1);
  EXPECT_EQ(one->get_params().W, two->get_params().W);
  EXPECT_EQ(one->get_params().b, two->get_params().b);
  EXPECT_EQ(one->get_params().a, two->get_params().a);
  const TrainingState end = two->get_training_state();
  EXPECT_EQ(one->get_training_state(), end);
  ASSERT_EQ(end.n_chains, 9);
  ASSERT_EQ(end.chains.size(), size_t{9} * 16);
  EXPECT_NE(end.chains, middle.chains);

  std::vector<uint8_t> sampled = middle.chains;
  cpu::sample_chains(params_middle, philox_key(recipe.seed, Purpose::train), sampled.data(), 9,
                     1 * recipe.k, recipe.k, 1);
  EXPECT_EQ(sampled, end.chains) << "PCD's negative phase is the sampler";
}

// A checkpoint's view: the state read from one backend and set on another (after set_params)
// continues exactly; set_params alone clears it; wrong shapes are refused.
TEST(Minibatch, TrainingStateRoundTrip) {
  const Dataset data = patterned_images(16, 30, 4);
  const Params start = test::random_params(16, 6, 0.5f, 9, /*visible_bias=*/true);
  const Recipe recipe = full_recipe(true, 11);
  std::unique_ptr<Backend> whole = make_cpu_backend(), first = make_cpu_backend(),
                           resumed = make_cpu_backend();
  for (Backend* be : {whole.get(), first.get(), resumed.get()}) be->stage(data);
  whole->set_params(start);
  whole->train_minibatch(recipe, 0, 6);
  first->set_params(start);
  first->train_minibatch(recipe, 0, 4);
  resumed->set_params(first->get_params());
  resumed->set_training_state(first->get_training_state());
  resumed->train_minibatch(recipe, 4, 2);
  EXPECT_EQ(resumed->get_params().W, whole->get_params().W);
  EXPECT_EQ(resumed->get_training_state(), whole->get_training_state());

  resumed->set_params(start);
  const TrainingState cleared = resumed->get_training_state();
  EXPECT_TRUE(cleared.vW.empty());
  EXPECT_EQ(cleared.n_chains, 0);

  TrainingState bad = whole->get_training_state();
  bad.vW.pop_back();
  EXPECT_INPUT_ERROR(resumed->set_training_state(bad), "velocities");
  bad = whole->get_training_state();
  bad.n_chains += 1;
  EXPECT_INPUT_ERROR(resumed->set_training_state(bad), "chains");
}

// Backend::stage() clears the training state too (host/backend.hpp): after a PCD run with
// momentum, stage() leaves no velocities and no chains, and training on the new images from the
// same parameters is bit for bit that of a fresh backend, whose PCD chains start from the new
// images and whose velocities start at 0. Fails a stage() that keeps the old chains (their images
// would be the old data's) or the old velocities.
TEST(Minibatch, StageClearsTheTrainingState) {
  const Dataset first_images = patterned_images(16, 30, 4),
                second_images = patterned_images(16, 30, 9);
  const Params start = test::random_params(16, 6, 0.5f, 9, /*visible_bias=*/true);
  const Recipe recipe = full_recipe(true, 11);
  std::unique_ptr<Backend> restaged = make_cpu_backend(), fresh = make_cpu_backend();
  restaged->stage(first_images);
  restaged->set_params(start);
  restaged->train_minibatch(recipe, 0, 3);
  const TrainingState trained = restaged->get_training_state();
  ASSERT_FALSE(trained.vW.empty());
  ASSERT_GT(trained.n_chains, 0);
  const Params middle = restaged->get_params();

  restaged->stage(second_images);
  const TrainingState cleared = restaged->get_training_state();
  EXPECT_TRUE(cleared.vW.empty());
  EXPECT_TRUE(cleared.vb.empty());
  EXPECT_TRUE(cleared.va.empty());
  EXPECT_EQ(cleared.n_chains, 0);
  EXPECT_TRUE(cleared.chains.empty());
  EXPECT_EQ(restaged->get_params().W, middle.W) << "stage() keeps the parameters";

  fresh->stage(second_images);
  fresh->set_params(middle);
  restaged->train_minibatch(recipe, 3, 2);
  fresh->train_minibatch(recipe, 3, 2);
  EXPECT_EQ(restaged->get_params().W, fresh->get_params().W);
  EXPECT_EQ(restaged->get_params().b, fresh->get_params().b);
  EXPECT_EQ(restaged->get_params().a, fresh->get_params().a);
  EXPECT_EQ(restaged->get_training_state(), fresh->get_training_state());
}

TEST(Minibatch, PlainRecipeStaysOnTheSingleSamplePath) {
  const Dataset data = patterned_images(20, 50, 1);
  const Params start = test::random_params(20, 7, 0.3f, 4, /*visible_bias=*/true);
  Recipe recipe;
  recipe.lr = 0.05f;
  std::unique_ptr<Backend> direct = make_cpu_backend(), routed = make_cpu_backend();
  for (Backend* be : {direct.get(), routed.get()}) {
    be->stage(data);
    be->set_params(start);
  }
  direct->train_cd(recipe, 0, 300);
  run_updates(*routed, recipe, 0, 300);
  EXPECT_EQ(direct->get_params().W, routed->get_params().W);
}

// Tasks have shape-only boundaries and single-threaded sgemm calls: 1, 2 and 3 threads give the
// same bits, for training (several tiles of the batch, the chains and W) and for the sampler.
TEST(Minibatch, ThreadCountDoesNotChangeResults) {
  const Dataset data = patterned_images(150, 400, 2);
  const Params start = test::random_params(150, 70, 0.1f, 10, /*visible_bias=*/true);
  Recipe recipe = full_recipe(true, 3);
  recipe.batch = 130;
  recipe.chains = 140;
  recipe.epochs = 0;
  recipe.iters = 10;
  std::vector<Params> trained;
  std::vector<std::vector<uint8_t>> sampled;
  for (const int threads : {1, 2, 3}) {
    cpu::MinibatchTrainer trainer;
    trainer.stage(data);
    Params p = start;
    trainer.train(p, recipe, 0, 4, threads);
    trained.push_back(p);
    std::vector<uint8_t> states(data.pixels.begin(), data.pixels.begin() + 300 * 150);
    cpu::sample_chains(start, 42, states.data(), 300, 0, 5, threads);
    sampled.push_back(states);
  }
  for (size_t t = 1; t < trained.size(); ++t) {
    EXPECT_EQ(trained[t].W, trained[0].W) << t + 1 << " threads";
    EXPECT_EQ(trained[t].b, trained[0].b) << t + 1 << " threads";
    EXPECT_EQ(trained[t].a, trained[0].a) << t + 1 << " threads";
    EXPECT_EQ(sampled[t], sampled[0]) << t + 1 << " threads";
  }
  EXPECT_NE(trained[0].W, start.W);
}

// Per-pixel means of 2^16 chains after kBurnIn steps of the CPU's GEMM sampler (Backend::gibbs)
// against the exact marginals p_i = P(x_i = 1) by enumeration (d = 10, H = 5). The burn-in leaves
// each chain's law within 1e-12 of the stationary one in total variation (checked here; it is
// ~1e-14, the floor of the double computation), so the N independent chains' joint law is within
// N 1e-12 = 6.6e-8 of independent draws from p(x), and each pixel's count is Binomial(N, p_i) to
// within that. A pixel fails when |mean - p_i| > kZ sqrt(p_i (1 - p_i) / N), kZ = 5.6: a
// two-sided normal tail of 2.1e-8 per pixel, 2.1e-7 for the 10 pixels of one test, 2.8e-7 with
// the burn-in's 6.6e-8, and 5.6e-7 for the two tests (binary and ternary) by the union bound. (It
// was 5.33 with a 1e-9 burn-in bound: 9.8e-8 per pixel, 9.8e-7 per test before the burn-in's
// N 1e-9 = 6.6e-5, 2e-6 for the pair.) The same means scored against the model with 1.3 W must
// fail, or the test could pass anything.
void expect_sampler_pixel_means_match_enumeration(HiddenType type) {
  constexpr int d = 10, H = 5, kBurnIn = 60;
  constexpr double kZ = 5.6;
  constexpr int64_t kChains = int64_t{1} << 16;
  Params params = test::random_params(d, H, 0.9f, 404, /*visible_bias=*/true);
  params.hidden_type = type;
  const std::vector<double> stationary = visible_distribution(params);
  const std::vector<double> law = test::exact_law_after(params, kBurnIn);
  double tv = 0.0;
  for (size_t x = 0; x < law.size(); ++x) tv += 0.5 * std::fabs(law[x] - stationary[x]);
  ASSERT_LT(tv, 1e-12) << "the burn-in is too short for this model";

  const uint32_t seed = 12;
  const uint64_t key = philox_key(seed, Purpose::sample);
  std::vector<uint8_t> states(static_cast<size_t>(kChains) * d);
  for (int64_t c = 0; c < kChains; ++c) {
    for (int i = 0; i < d; ++i) {
      states[static_cast<size_t>(c) * d + i] =
          static_cast<uint8_t>(philox_uniform(key, static_cast<uint64_t>(c), kInitPhase,
                                              static_cast<uint32_t>(i)) < 0.5f);
    }
  }
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(params);
  backend->gibbs(states, kChains, seed, 0, kBurnIn);

  const auto marginals = [&](const std::vector<double>& p) {
    std::vector<double> m(d, 0.0);
    for (size_t x = 0; x < p.size(); ++x) {
      for (int i = 0; i < d; ++i) m[i] += ((x >> i) & 1) ? p[x] : 0.0;
    }
    return m;
  };
  std::vector<double> mean(d, 0.0);
  for (int64_t c = 0; c < kChains; ++c) {
    for (int i = 0; i < d; ++i) mean[i] += states[static_cast<size_t>(c) * d + i];
  }
  for (double& m : mean) m /= static_cast<double>(kChains);
  const auto failures = [&](const std::vector<double>& p) {
    int n = 0;
    for (int i = 0; i < d; ++i) {
      const double bound = kZ * std::sqrt(p[i] * (1.0 - p[i]) / static_cast<double>(kChains));
      n += std::fabs(mean[i] - p[i]) > bound ? 1 : 0;
    }
    return n;
  };
  const std::vector<double> exact = marginals(stationary);
  for (int i = 0; i < d; ++i) {
    EXPECT_NEAR(mean[i], exact[i],
                kZ * std::sqrt(exact[i] * (1.0 - exact[i]) / static_cast<double>(kChains)))
        << "pixel " << i;
  }
  Params other = params;
  for (float& w : other.W) w *= 1.3f;
  EXPECT_GT(failures(marginals(visible_distribution(other))), 0)
      << "the bound cannot tell this model from one with 1.3 W";
}

TEST(Minibatch, SamplerPixelMeansMatchEnumeration) {
  expect_sampler_pixel_means_match_enumeration(HiddenType::binary);
}
// The sampler with ternary hidden units (h ~ P(h_j = s) proportional to exp(s t_j)), the same
// bounds and the same failure probability (< 1e-6) against the ternary model's enumeration.
TEST(Minibatch, TernarySamplerPixelMeansMatchEnumeration) {
  expect_sampler_pixel_means_match_enumeration(HiddenType::ternary);
}

// The flags: bad values get one line naming the flag and exit code 2; a short PCD run on MNIST
// threes writes its recipe and algorithm into run.json.
TEST(MinibatchCli, BadFlagsAndARun) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--batch", "0"}, "--batch"},
      {{"--chains", "5"}, "--chains needs --pcd"},
      {{"--momentum", "1"}, "--momentum"},
      {{"--weight-decay", "-1"}, "--weight-decay"},
      {{"--epochs", "-2"}, "--epochs"},
      {{"--lr-decay", "cubic"}, "--lr-decay"},
      {{"--batch", "100000", "--data", RBM_MNIST_DIR, "--out", "/nonexistent/x"}, "--batch"},
  };
  for (const auto& [args, flag] : bad) {
    const test::CommandResult r = test::run_command(RBM_CPU_EXE, args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.output;
    EXPECT_NE(r.output.find(flag), std::string::npos) << r.output;
    EXPECT_EQ(test::line_count(r.output), 1) << r.output;
  }
  const test::TempDir dir;
  const test::CommandResult r = test::run_command(
      RBM_CPU_EXE,
      {"--data",  RBM_MNIST_DIR, "--split", "test",           "--hidden", "16",
       "--batch", "50",          "--pcd",   "--chains",       "30",       "--k",
       "2",       "--lr",        "0.05",    "--momentum",     "0.5",      "--lr-decay",
       "linear",  "--epochs",    "2",       "--visible-bias", "--out",    (dir / "run").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir / "run" / "run.json");
  const nlohmann::json run = nlohmann::json::parse(in);
  EXPECT_EQ(run["algorithm"], "minibatch-pcd");
  EXPECT_EQ(run["recipe"]["iters"], 2 * (1010 / 50));  // 1010 test threes, 20 batches an epoch
  EXPECT_EQ(run["recipe"]["chains"], 30);
  EXPECT_EQ(run["recipe"]["lr_decay"], "linear");
  EXPECT_EQ(run["iteration"], 40);
  EXPECT_NE(r.output.find("trained 40 updates on 1010 images with cpu in "), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(" us/update)"), std::string::npos) << r.output;

  // PCD without --chains runs --batch chains, and run.json says how many (not 0 for "the
  // default"); the run resumes with them.
  const test::CommandResult defaulted = test::run_command(
      RBM_CPU_EXE, {"--data", RBM_MNIST_DIR, "--split", "test", "--hidden", "4", "--batch", "20",
                    "--pcd", "--iters", "2", "--out", (dir / "defaulted").string()});
  ASSERT_EQ(defaulted.exit_code, 0) << defaulted.output;
  std::ifstream defaulted_in(dir / "defaulted" / "run.json");
  EXPECT_EQ(nlohmann::json::parse(defaulted_in)["recipe"]["chains"], 20);
  const test::CommandResult resumed =
      test::run_command(RBM_CPU_EXE, {"--resume", (dir / "defaulted").string(), "--iters", "3"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
}

// A --batch 1 run that only --epochs puts on the minibatch path stays there when --iters extends
// it (which records epochs 0): it once went on as single-sample CD from the resume. Its weights
// equal the minibatch trainer's over all the updates in one call (the data order is the same).
// A run.json whose algorithm its recipe does not select (edited by hand) is refused.
TEST(MinibatchCli, AnEpochsRunExtendedWithItersStaysOnTheMinibatchPath) {
  const test::TempDir dir;
  const std::filesystem::path run = dir / "run";
  const test::CommandResult first = test::run_command(
      RBM_CPU_EXE, {"--data", RBM_MNIST_DIR, "--split", "test", "--hidden", "4", "--epochs", "1",
                    "--log-every", "100000", "--out", run.string()});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(test::read_json(run / "run.json")["algorithm"], "minibatch-cd");
  for (const char* end : {"1100", "1200"}) {  // extended twice: the second from epochs 0
    const test::CommandResult more =
        test::run_command(RBM_CPU_EXE, {"--resume", run.string(), "--iters", end});
    ASSERT_EQ(more.exit_code, 0) << more.output;
    EXPECT_NE(more.output.find(std::string("trained ") + end + " updates (resumed at "),
              std::string::npos)
        << more.output;
    const nlohmann::json record = test::read_json(run / "run.json");
    EXPECT_EQ(record["algorithm"], "minibatch-cd");
    EXPECT_EQ(record["recipe"]["epochs"], 0);
  }
  Recipe recipe;
  recipe.hidden = 4;
  recipe.minibatch = true;
  recipe.iters = 1200;
  const Dataset threes = load_mnist(RBM_MNIST_DIR, 3, Split::test);
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  cpu->stage(threes);
  cpu->set_params(init_params(recipe, threes));
  cpu->train_minibatch(recipe, 0, 1200);
  EXPECT_EQ(load_checkpoint(run).params.W, cpu->get_params().W);

  // A single-sample run whose recipe.batch was edited to 5 would go on as minibatch CD.
  const std::filesystem::path plain = dir / "plain";
  ASSERT_EQ(test::run_command(RBM_CPU_EXE, {"--data", RBM_MNIST_DIR, "--split", "test", "--hidden",
                                            "4", "--iters", "5", "--out", plain.string()})
                .exit_code,
            0);
  nlohmann::json edited = test::read_json(plain / "run.json");
  edited["recipe"]["batch"] = 5;
  test::write_bytes(plain / "run.json", edited.dump(2));
  const test::CommandResult refused =
      test::run_command(RBM_CPU_EXE, {"--resume", plain.string(), "--iters", "10"});
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("algorithm \"cd\" is not the one its recipe selects "
                                "(\"minibatch-cd\")"),
            std::string::npos)
      << refused.output;
}

// The same with a batch of 70 rows, two task tiles of 64 (host/cpu_minibatch.cpp's kRowTile): row
// r of the second tile is single-sample iteration u B + r too, not u B + (r - 64). A batch mean
// of 70 single-sample steps: the minibatch's float sums (two sgemms of 70 terms whose sizes add up
// to at most 1, times lr = 0.25) err by at most 2 x 70 x 2^-24 x 0.25 = 2.1e-6, the double mean of
// the single-sample results by ~1e-7, so 5e-6; a second tile that reused the first tile's draws
// moves entries by ~6/70 x lr x |m(x) - m(x')| ~ 1e-3.
TEST(Minibatch, GradientIsTheMeanOfSingleSampleGradientsAcrossTiles) {
  expect_gradient_is_the_mean_of_single_sample_gradients(HiddenType::binary, 70, 3, 5e-6);
}

// PCD's chains start at the images initial_chain_image names, and chain c draws from stream c
// whichever task tile of 64 chains it falls in (host/cpu_minibatch.cpp's kRowTile): with 70 chains
// (two tiles), the chains after update 0 are exactly the sampler's k steps, from those images and
// the start parameters, on the same two tiles (chains 0..63 as streams 0..63, chains 64..69 as
// streams 64..69 via first_chain). Each tile runs the same products on the same rows, so the bits
// agree: no tolerance, no failure probability. Fails a trainer whose later tiles reuse streams
// 0.. (their chains would copy the first tile's draws) or whose chains all start at one image.
TEST(Minibatch, PcdChainsPastTheFirstTileDrawFromTheirOwnStreams) {
  constexpr int d = 16;
  constexpr int64_t kChains = 70;
  const Dataset data = patterned_images(d, 100, 3);
  const Params start = test::random_params(d, 6, 0.5f, 8, /*visible_bias=*/true);
  Recipe recipe = full_recipe(true, 5);
  recipe.chains = static_cast<int>(kChains);
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(data);
  backend->set_params(start);
  backend->train_minibatch(recipe, 0, 1);
  const TrainingState state = backend->get_training_state();
  ASSERT_EQ(state.n_chains, kChains);

  std::vector<uint8_t> want(static_cast<size_t>(kChains) * d);
  for (int64_t c = 0; c < kChains; ++c) {
    const uint8_t* image = data.row(initial_chain_image(recipe.seed, c, data.rows));
    std::copy_n(image, d, want.begin() + c * d);
  }
  const uint64_t key = philox_key(recipe.seed, Purpose::train);
  cpu::sample_chains(start, key, want.data(), 64, 0, recipe.k, 1, 0);
  cpu::sample_chains(start, key, want.data() + 64 * d, kChains - 64, 0, recipe.k, 1, 64);
  EXPECT_EQ(state.chains, want);
}

}  // namespace
}  // namespace rbm
