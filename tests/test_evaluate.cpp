// Exact evaluation (host/evaluate.hpp) against direct enumerations over (x, h) in long double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// log sum_{x, h} exp(x'Wh + b'h + a'x) over all binary x and h.
long double brute_force_log_partition(const Params& p) {
  const int d = p.visible, H = p.hidden;
  long double total = 0.0L;
  for (uint32_t xs = 0; xs < (1u << d); ++xs) {
    for (uint32_t hs = 0; hs < (1u << H); ++hs) {
      long double energy = 0.0L;
      for (int j = 0; j < H; ++j) {
        if (!((hs >> j) & 1)) continue;
        energy += p.b[j];
        for (int i = 0; i < d; ++i) energy += ((xs >> i) & 1) ? p.W[i * H + j] : 0.0f;
      }
      for (int i = 0; i < d && p.has_visible_bias(); ++i) energy += ((xs >> i) & 1) ? p.a[i] : 0.0f;
      total += std::exp(energy);
    }
  }
  return std::log(total);
}

TEST(Evaluate, ExactLogPartitionMatchesBruteForce) {
  for (bool visible_bias : {false, true}) {
    const Params p = test::random_params(5, 4, 1.0f, 3, visible_bias);
    EXPECT_NEAR(exact_log_partition(p), static_cast<double>(brute_force_log_partition(p)), 1e-10);
  }
}

TEST(Evaluate, ExactLogPartitionAgreesWithVisibleEnumerationForManyHiddenUnits) {
  // H = 14 exercises the Gray-code walk across threads; d = 8 lets us sum over x instead.
  const Params p = test::random_params(8, 14, 0.5f, 4, true);
  double log_z_visible = -1e300;
  std::vector<uint8_t> x(8);
  for (uint32_t s = 0; s < 256; ++s) {
    for (int i = 0; i < 8; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    const double v = -free_energy(p, x.data());
    const double hi = std::max(log_z_visible, v);
    log_z_visible = hi + std::log(std::exp(log_z_visible - hi) + std::exp(v - hi));
  }
  EXPECT_NEAR(exact_log_partition(p), log_z_visible, 1e-9);
}

// log sum_h exp(b'h + sum_i softplus(W_i h + a_i)) over every hidden state (h in {0, 1}^H, or
// {-1, 0, 1}^H for ternary units), each state's pre-activations summed afresh in long double.
long double log_partition_over_fresh_states(const Params& p) {
  const int d = p.visible, H = p.hidden;
  const bool ternary = p.hidden_type == HiddenType::ternary;
  int64_t n_states = 1;
  for (int j = 0; j < H; ++j) n_states *= ternary ? 3 : 2;
  std::vector<long double> log_weights;
  std::vector<int> h(static_cast<size_t>(H));
  for (int64_t s = 0; s < n_states; ++s) {
    int64_t rest = s;
    long double log_weight = 0.0L;
    for (int j = 0; j < H; ++j) {
      h[j] = ternary ? static_cast<int>(rest % 3) - 1 : static_cast<int>(rest % 2);
      rest /= ternary ? 3 : 2;
      log_weight += h[j] * static_cast<long double>(p.b[j]);
    }
    for (int i = 0; i < d; ++i) {
      long double t = p.has_visible_bias() ? p.a[i] : 0.0L;
      for (int j = 0; j < H; ++j) t += h[j] * static_cast<long double>(p.W[i * H + j]);
      log_weight += t > 0 ? t + std::log1p(std::exp(-t)) : std::log1p(std::exp(t));
    }
    log_weights.push_back(log_weight);
  }
  const long double top = *std::max_element(log_weights.begin(), log_weights.end());
  long double sum = 0.0L;
  for (const long double v : log_weights) sum += std::exp(v - top);
  return top + std::log(sum);
}

// At d = 784, both sums exact_log_partition may take (the product of the factors 1 + e^{p_i},
// refreshed from p every 256 states, in vector lanes renormalized before they can overflow; and the
// softplus sum when some p_i can leave +-600) against fresh long-double sums over every state.
// Bound: each state's log weight is off by at most 784 units x (2 x 256 + 1) roundings of 1.1e-16
// relative in the product (a tabled factor's own and the multiplication each step, the exp at each
// refresh: 4.4e-11), plus p's sums; relative 1e-11 of |log Z| (which is above 600 here, so 6e-9)
// covers both, and is 1000 times below anything the reports print.
TEST(Evaluate, ExactLogPartitionMatchesFreshSumsAtFullSize) {
  struct Case {
    int H;
    float scale;  // of W, b and a
    HiddenType type;
    bool visible_bias, products;
  };
  const Case cases[] = {
      {12, 0.3f, HiddenType::binary, true, true},
      {12, 0.3f, HiddenType::binary, false, true},
      {12, 20.0f, HiddenType::binary, true, true},  // p_i up to ~100: lanes renormalized often
      {7, 0.3f, HiddenType::ternary, true, true},
      {7, 20.0f, HiddenType::ternary, false, true},
      {10, 300.0f, HiddenType::binary, true, false},  // p_i beyond 600: the softplus sum
      {6, 300.0f, HiddenType::ternary, true, false},
      {2, 0.0f, HiddenType::binary, true, false},  // W_00 720, a_0 -300 (below): the softplus sum
  };
  uint32_t seed = 70;
  for (const Case& c : cases) {
    Params p = test::random_params(784, c.H, c.scale, ++seed, c.visible_bias);
    p.hidden_type = c.type;
    if (c.scale == 0.0f) {
      // p_0 stays in [-300, 420], but the step factor e^{720} overflows: no products.
      p.W[0] = 720.0f;
      p.a[0] = -300.0f;
    }
    SCOPED_TRACE(::testing::Message() << "H " << c.H << " scale " << c.scale
                                      << (c.type == HiddenType::ternary ? " ternary" : " binary"));
    ASSERT_EQ(exact_log_partition_uses_products(p), c.products);
    const double want = static_cast<double>(log_partition_over_fresh_states(p));
    EXPECT_NEAR(exact_log_partition(p), want, 1e-11 * std::fabs(want));
  }
}

// Over long walks: each e^{p_i} is updated by multiplications by e^{W_ij} and e^{-W_ij}, whose
// product is 1 only to an ulp, so without recomputing e^{p_i} the factors would drift by about
// one ulp per flip of a unit pair (unit 0 flips 2^20 times in each of two workers' 2^21 states
// at H 22: a drift near 1e-10 relative per factor, 64 factors). Recomputed every 256 steps (from p
// summed afresh), a factor carries at most 2 x 256 + 1 roundings; the softplus sum carries its
// running p through each piece of 4096 states. Both are sums of roundings of either sign, a random
// walk: about sqrt(513) x 1.1e-16 a factor, 64 x 23 x 1.1e-16 = 1.6e-13 in a state's log weight;
// measured, the two agree to 1.4e-14 (binary and ternary). 2e-12 is a regression bound, not a
// test of the refresh: with the one every 256 states taken out (each piece of 4096 states still
// starts with one) they differ by 1.1e-13 and 1.6e-13; unit 0's 2^20 flips in one walk, before the
// pieces, drifted by 5e-11.
TEST(Evaluate, ProductsMatchTheSoftplusSumOverLongWalks) {
  Params binary = test::random_params(64, 22, 0.3f, 41, true);
  ASSERT_TRUE(exact_log_partition_uses_products(binary));
  EXPECT_NEAR(exact_log_partition(binary, LogZSum::products),
              exact_log_partition(binary, LogZSum::softplus), 2e-12);
  Params ternary = test::random_params(64, 14, 0.3f, 42, true);
  ternary.hidden_type = HiddenType::ternary;
  EXPECT_NEAR(exact_log_partition(ternary, LogZSum::products),
              exact_log_partition(ternary, LogZSum::softplus), 2e-12);
  Params huge = test::random_params(8, 3, 0.1f, 43, false);
  huge.W[0] = 700.0f;
  EXPECT_THROW(exact_log_partition(huge, LogZSum::products), std::invalid_argument);
}

TEST(Evaluate, ProbabilitiesSumToOne) {
  const Params p = test::random_params(10, 7, 0.8f, 5, true);
  const double log_z = exact_log_partition(p);
  double total = 0.0;
  std::vector<uint8_t> x(10);
  for (uint32_t s = 0; s < 1024; ++s) {
    for (int i = 0; i < 10; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    total += std::exp(-free_energy(p, x.data()) - log_z);
  }
  EXPECT_NEAR(total, 1.0, 1e-10);
  const std::vector<double> dist = visible_distribution(p);
  double dist_total = 0.0;
  for (double v : dist) dist_total += v;
  EXPECT_NEAR(dist_total, 1.0, 1e-12);
}

// d = 12: log p(x) of every one of the 4096 images, through mean_log_prob (the batch path that
// eval uses) with log Z from the CPU backend, sums to 1 in probability, with and without visible
// biases. mean_free_energy forms W'x + b in float (sgemm, as every batch metric does), so each
// log p(x) carries that rounding, about 1e-7 relative here (measured: the sums are 1 + 1.3e-7 and
// 1 + 2.0e-7); a wrong log Z or a missing term is off by far more than the 1e-6 allowed.
TEST(Evaluate, LogProbOfEveryImageSumsToOne) {
  for (const bool visible_bias : {false, true}) {
    const Params p = test::random_params(12, 9, 0.7f, 10, visible_bias);
    const std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->set_params(p);
    const double log_z = backend->exact_log_partition();
    EXPECT_NEAR(log_z, exact_log_partition(p), 1e-12);
    std::vector<uint32_t> all(4096);
    for (uint32_t s = 0; s < 4096; ++s) all[s] = s;
    double total = 0.0;
    for (const uint32_t s : all) {
      total += std::exp(mean_log_prob(p, test::bit_images(12, {s}), log_z));
    }
    EXPECT_NEAR(total, 1.0, 1e-6) << (visible_bias ? "visible bias" : "no visible bias");
  }
}

// The images' bound of log Z: log sum exp(-F) over the distinct images (all of them here: fewer
// than kImagesLowerBoundTerms), each counted once however often it appears; below the exact log Z
// (d = 12: every one of the 4096 images gives log Z itself, to rounding), for binary and ternary
// hidden units.
TEST(Evaluate, ImagesLowerBoundIsTheirDistinctMass) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    Params p = test::random_params(12, 7, 0.8f, 12, true);
    p.hidden_type = type;
    const std::vector<uint32_t> patterns = {0b101010101010, 0b000011111111, 0b110000011000, 5};
    double sum = 0.0;
    for (const uint32_t s : patterns) {
      sum += std::exp(-free_energy(p, test::bit_images(12, {s}).row(0)));
    }
    const double bound = images_log_z_lower_bound(p, test::bit_images(12, patterns));
    EXPECT_NEAR(bound, std::log(sum), 1e-12) << hidden_type_name(type);
    std::vector<uint32_t> repeated = patterns;
    repeated.insert(repeated.end(), {5, 5, 0b101010101010});
    EXPECT_EQ(images_log_z_lower_bound(p, test::bit_images(12, repeated)), bound);
    const double log_z = exact_log_partition(p);
    EXPECT_LT(bound, log_z);
    // All 4096 images: the 64 of lowest free energy bound log Z and come within log(4096 / 64) of
    // it (they are the 64 largest of its 4096 terms).
    std::vector<uint32_t> all(4096);
    for (uint32_t s = 0; s < 4096; ++s) all[s] = s;
    const double all_bound = images_log_z_lower_bound(p, test::bit_images(12, all));
    EXPECT_LE(all_bound, log_z + 1e-12 * std::fabs(log_z));
    EXPECT_GE(all_bound, log_z - std::log(4096.0 / kImagesLowerBoundTerms));
  }
  EXPECT_EQ(images_log_z_lower_bound(test::random_params(12, 3, 0.5f, 1, false), Dataset{}),
            -std::numeric_limits<double>::infinity());
}

TEST(Evaluate, MeanLogProbIsMinusFreeEnergyMinusLogZ) {
  const Params p = test::random_params(9, 5, 0.8f, 6, true);
  const Dataset data = test::bit_images(9, {0b101010101, 0b000011111, 0b110000011});
  const std::vector<double> dist = visible_distribution(p);
  const double want =
      (std::log(dist[0b101010101]) + std::log(dist[0b000011111]) + std::log(dist[0b110000011])) / 3;
  EXPECT_NEAR(mean_log_prob(p, data, exact_log_partition(p)), want, 1e-6);
}

TEST(Evaluate, PseudoLikelihoodMatchesDirectComputation) {
  const Params p = test::random_params(7, 5, 0.9f, 7, true);
  const std::vector<uint32_t> patterns = {0b1010101, 0b0001111, 0b1100011, 0};
  const Dataset data = test::bit_images(7, patterns);
  const std::vector<double> dist = visible_distribution(p);
  double want = 0.0;
  for (const uint32_t x : patterns) {
    for (int i = 0; i < 7; ++i) want += std::log(dist[x] / (dist[x] + dist[x ^ (1u << i)]));
  }
  want /= static_cast<double>(patterns.size());
  EXPECT_NEAR(mean_pseudo_log_likelihood(p, data), want, 1e-5);
}

// NaN parameters (a diverged model) give a NaN PLL, not a finite number: the products' lanes are
// renormalized through their exponent bits, where a NaN of either sign must not pass for a value
// (inf - inf, as a diverging float sum makes it, is a NaN with the sign bit set on x86).
TEST(Evaluate, PseudoLikelihoodOfNanWeightsIsNan) {
  const int d = 784;
  Dataset images;
  images.width = images.height = 28;
  images.rows = 1;
  for (int i = 0; i < d; ++i) images.pixels.push_back(static_cast<uint8_t>(i % 5 == 0));
  images.labels.push_back(3);
  const Params finite = test::random_params(d, 40, 0.3f, 12, /*visible_bias=*/true);
  ASSERT_TRUE(std::isfinite(mean_pseudo_log_likelihood(finite, images)));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const float bad : {nan, -nan}) {
    Params p = finite;
    // Pixel 6 is off: the NaN is in no pre-activation of the image, only in the factors of the
    // image flipped at pixel 6.
    p.W[6 * 40 + 7] = bad;
    EXPECT_TRUE(std::isnan(mean_pseudo_log_likelihood(p, images))) << bad;
  }
}

// Weights near FLT_MAX are finite, and so are the model's free energies: where the float GEMM's
// pre-activations overflow, they are summed again in double. Want: the mean of free_energy (double
// throughout) and the PLL from it, log p(x_i | x_-i) = -softplus(F(x) - F(x flipped at i)).
TEST(Evaluate, WeightsNearFloatMaxGiveFiniteScores) {
  Params p = test::random_params(7, 3, 0.5f, 8, true);
  for (size_t k = 0; k < p.W.size(); ++k) p.W[k] = (k % 3 == 0 ? -3e38f : 3e38f);
  const std::vector<uint32_t> patterns = {0b1010101, 0b0001111, 0b1100011, 0};
  const Dataset data = test::bit_images(7, patterns);
  double want_f = 0.0, want_pll = 0.0;
  for (int64_t r = 0; r < data.rows; ++r) {
    const double f = free_energy(p, data.row(r));
    ASSERT_TRUE(std::isfinite(f));
    want_f += f;
    for (int i = 0; i < 7; ++i) {
      std::vector<uint8_t> flipped(data.row(r), data.row(r) + 7);
      flipped[static_cast<size_t>(i)] ^= 1;
      want_pll -= softplus(f - free_energy(p, flipped.data()));
    }
  }
  want_f /= static_cast<double>(data.rows);
  want_pll /= static_cast<double>(data.rows);
  EXPECT_NEAR(mean_free_energy(p, data), want_f, 1e-12 * std::fabs(want_f));
  EXPECT_NEAR(mean_pseudo_log_likelihood(p, data), want_pll, 1e-12 * std::fabs(want_pll));

  // The reconstruction error too: its float sums of W h overflow (to +inf, or to NaN where the
  // summation order meets +inf and -inf); such rows are summed again in double. Want: the mean
  // squared error from sums in double throughout.
  double want_recon = 0.0;
  for (int64_t r = 0; r < data.rows; ++r) {
    std::vector<double> mean(3);
    for (int j = 0; j < 3; ++j) {
      double t = p.b[j];
      for (int i = 0; i < 7; ++i) t += data.row(r)[i] ? p.W[i * 3 + j] : 0.0;
      mean[j] = 1.0 / (1.0 + std::exp(-t));
    }
    for (int i = 0; i < 7; ++i) {
      double u = p.a[i];
      for (int j = 0; j < 3; ++j) u += p.W[i * 3 + j] * mean[j];
      const double diff = data.row(r)[i] - 1.0 / (1.0 + std::exp(-u));
      want_recon += diff * diff;
    }
  }
  want_recon /= static_cast<double>(data.rows * 7);
  EXPECT_NEAR(reconstruction_error(p, data), want_recon, 1e-12);
}

// A hidden unit whose bias is so large that it is always on (an exploratory tester's hand-edited
// b_0 = 1e10) leaves the model of the other units with W's column 0 added to the visible biases,
// whose log Z is smaller by exactly b_0 (Z's h_0 = 0 terms are e^{-1e10} of the rest) and whose
// free energies are larger by b_0. log p(x) is the same: to 1e-6 nats (double's rounding at 1e10
// is 2e-6), where float pre-activations had moved it by 2.5 nats (their rounding at 1e10 is 512).
TEST(Evaluate, AHiddenBiasOf1e10LeavesLogProbAsTheFoldedModelsOne) {
  const int d = 40, H = 6;
  Params big = test::random_params(d, H, 0.5f, 44, /*visible_bias=*/true);
  big.b[0] = 1e10f;
  Params folded = big;
  folded.hidden = H - 1;
  folded.b.erase(folded.b.begin());
  folded.W.clear();
  for (int i = 0; i < d; ++i) {
    // The sum in double, then float: the folded bias differs from a_i + W_i0 by float rounding
    // (half of 2^-24 relative, below 1e-7 of a bias near 1: 4e-6 nats over 40 visible units).
    folded.a[i] = static_cast<float>(double{big.a[i]} + big.W[static_cast<size_t>(i) * H]);
    for (int j = 1; j < H; ++j) folded.W.push_back(big.W[static_cast<size_t>(i) * H + j]);
  }
  const Dataset data = test::patterned_images(d, 64, 45);
  const double log_z_big = exact_log_partition(big), log_z_folded = exact_log_partition(folded);
  // Each image's rounded a_i differ in at most d terms of at most 6e-8: 3e-6, and 2e-6 of 1e10.
  constexpr double kTolerance = 1e-5;
  EXPECT_NEAR(log_z_big - 1e10, log_z_folded, kTolerance);
  EXPECT_NEAR(mean_free_energy(big, data) + 1e10, mean_free_energy(folded, data), kTolerance);
  EXPECT_NEAR(mean_log_prob(big, data, log_z_big), mean_log_prob(folded, data, log_z_folded),
              kTolerance);
  EXPECT_NEAR(images_log_z_lower_bound(big, data) - 1e10, images_log_z_lower_bound(folded, data),
              kTolerance);
}

// The PLL's terms take e^{s a_i} as a mantissa and a power of two only for |a_i| <= 1e6, and the
// log of the product with a softplus beyond: a visible bias of 1e19 or 1e30 (whose exponent
// would overflow an int64), or NaN, must give what -softplus(F(x) - F(x')) gives, to 1e-12
// relative (NaN for NaN), and +-inf the limit, -inf.
TEST(Evaluate, PseudoLikelihoodOfHugeOrNonFiniteVisibleBiases) {
  const std::vector<uint32_t> patterns = {0b1010101, 0b0001111, 0b1100011, 0};
  const Dataset data = test::bit_images(7, patterns);
  const double inf = std::numeric_limits<double>::infinity();
  for (const double a0 : {0.5, 3e5, -3e5, 2e6, 1e19, -1e19, 1e30, -1e30, inf, -inf,
                          std::numeric_limits<double>::quiet_NaN()}) {
    Params p = test::random_params(7, 3, 0.5f, 8, true);
    p.a[0] = static_cast<float>(a0);
    p.a[4] = static_cast<float>(-a0 / 2);
    double want = 0.0;
    for (int64_t r = 0; r < data.rows; ++r) {
      const double f = free_energy(p, data.row(r));
      for (int i = 0; i < 7; ++i) {
        std::vector<uint8_t> flipped(data.row(r), data.row(r) + 7);
        flipped[static_cast<size_t>(i)] ^= 1;
        want -= softplus(f - free_energy(p, flipped.data()));
      }
    }
    want /= static_cast<double>(data.rows);
    const double got = mean_pseudo_log_likelihood(p, data);
    if (std::isinf(a0)) {
      // F(x) - F(x') is inf - inf, but p(x_0 = 1 | x_-0) is 1 (a0 = +inf) or 0 (-inf): images
      // with x_0 the other way have log p = -inf, and the patterns have both.
      EXPECT_EQ(got, -inf) << a0;
    } else if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << a0;
    } else {
      EXPECT_NEAR(got, want, 1e-12 * std::fabs(want)) << a0;
    }
  }
}

// At d = 784 the exact PLL takes each flipped sum as the log of a product of factors
// 1 + e^{t_j} e^{s W_ij} (ternary: + e^{-t_j} e^{-s W_ij}), in vector lanes renormalized before
// they can overflow, or as a sum of softplus when max |t_j| + max |W_ij| > 600. Each case against
// F(x) - F(x flipped) from free_energy (double, its own sums); the scales make lanes renormalized
// only at the end (0.3), every few blocks of 16 factors (3), after every block (20), and the
// softplus sum (60); H 100 and 30 leave a partial last block. Tolerance: the product's relative
// rounding, about (H + 8) x 1.1e-16 per flipped sum of size ~|F|, is far below 1e-11 of the PLL.
TEST(Evaluate, PseudoLikelihoodAtFullSizeMatchesFreeEnergyDifferences) {
  const int d = 784;
  Dataset images;
  images.width = images.height = 28;
  images.rows = 2;
  const uint64_t key = philox_key(5, Purpose::init);
  for (int k = 0; k < images.rows * d; ++k) {
    images.pixels.push_back(static_cast<uint8_t>(philox_uniform(key, 7, 0, k) < 0.2f));
    if (k % d == 0) images.labels.push_back(3);
  }
  struct Case {
    int H;
    float scale;
    HiddenType type;
  };
  const Case cases[] = {{100, 0.3f, HiddenType::binary}, {30, 3.0f, HiddenType::binary},
                        {30, 20.0f, HiddenType::binary}, {30, 60.0f, HiddenType::binary},
                        {30, 0.3f, HiddenType::ternary}, {30, 3.0f, HiddenType::ternary},
                        {30, 60.0f, HiddenType::ternary}};
  uint32_t seed = 90;
  for (const Case& c : cases) {
    Params p = test::random_params(d, c.H, c.scale, ++seed, /*visible_bias=*/true);
    p.hidden_type = c.type;
    SCOPED_TRACE(::testing::Message() << "H " << c.H << " scale " << c.scale
                                      << (c.type == HiddenType::ternary ? " ternary" : " binary"));
    double want = 0.0;
    for (int64_t r = 0; r < images.rows; ++r) {
      const double f = free_energy(p, images.row(r));
      std::vector<uint8_t> flipped(images.row(r), images.row(r) + d);
      for (int i = 0; i < d; ++i) {
        flipped[static_cast<size_t>(i)] ^= 1;
        want -= softplus(f - free_energy(p, flipped.data()));
        flipped[static_cast<size_t>(i)] ^= 1;
      }
    }
    want /= static_cast<double>(images.rows);
    EXPECT_NEAR(mean_pseudo_log_likelihood(p, images), want, 1e-11 * std::fabs(want));
  }
}

TEST(Evaluate, ReconstructionErrorMatchesDirectComputation) {
  const Params p = test::random_params(7, 5, 0.9f, 8, true);
  const std::vector<uint32_t> patterns = {0b1010101, 0b0001111};
  const Dataset data = test::bit_images(7, patterns);
  double want = 0.0;
  for (const uint32_t x : patterns) {
    std::vector<double> ph(5);
    for (int j = 0; j < 5; ++j) {
      double t = p.b[j];
      for (int i = 0; i < 7; ++i) t += ((x >> i) & 1) ? p.W[i * 5 + j] : 0.0;
      ph[j] = 1.0 / (1.0 + std::exp(-t));
    }
    for (int i = 0; i < 7; ++i) {
      double t = p.a[i];
      for (int j = 0; j < 5; ++j) t += p.W[i * 5 + j] * ph[j];
      const double diff = ((x >> i) & 1) - 1.0 / (1.0 + std::exp(-t));
      want += diff * diff;
    }
  }
  want /= 14.0;
  EXPECT_NEAR(reconstruction_error(p, data), want, 1e-6);
}

// Products of many factors near their bound (host/log_product.hpp): a lane is renormalized after
// per_lane factors, per_lane x max_factor_log <= 708, so the bound its callers pass must cover
// log(1 + e^p) (exact log Z) or log(1 + e^t e^{sW} ...) (pseudo-likelihood), not just p: with p =
// 4, log(1 + e^4) = 4.018, and a bound of 4 lets 177 factors into a lane before it is renormalized,
// e^{177 x 4.018} = e^711 > DBL_MAX = e^709.78, which 3000 factors (~188 a lane) reach. Closed
// forms, in double:
//  - exact log Z of H = 1, b = 0, no visible bias, W = 4 on d = 3000 units: h = 0 contributes 2^d,
//    h = 1 (1 + e^4)^d, so log Z = d softplus(4) + log1p(2^d / (1 + e^4)^d). The walk's rounding
//    is below d x 513 x 1.1e-16 = 1.7e-10 (product_walk's comment); 1e-12 relative is 1.2e-8.
//  - the PLL of x = (1, 0) under d = 2, H = 3000, W = 2, b = 0: the free energies' differences,
//    summed in double (free_energy), as PseudoLikelihoodAtFullSizeMatchesFreeEnergyDifferences;
//    the same 1e-11 relative tolerance.
TEST(Evaluate, ProductsOfManyFactorsNearTheirBoundStayFinite) {
  {
    constexpr int d = 3000;
    Params p;
    p.visible = d;
    p.hidden = 1;
    p.W.assign(d, 4.0f);
    p.b.assign(1, 0.0f);
    ASSERT_TRUE(exact_log_partition_uses_products(p));
    const double want =
        d * softplus(4.0) + std::log1p(std::exp(d * (std::log(2.0) - softplus(4.0))));
    EXPECT_NEAR(exact_log_partition(p), want, 1e-12 * want);
  }
  {
    constexpr int H = 3000;
    Params p;
    p.visible = 2;
    p.hidden = H;
    p.W.assign(2 * H, 2.0f);
    p.b.assign(H, 0.0f);
    const Dataset images = test::bit_images(2, {0b01});
    double want = 0.0;
    const double f = free_energy(p, images.row(0));
    for (const uint32_t flipped : {0b00u, 0b11u}) {
      const uint8_t x[2] = {static_cast<uint8_t>(flipped & 1), static_cast<uint8_t>(flipped >> 1)};
      want -= softplus(f - free_energy(p, x));
    }
    EXPECT_NEAR(mean_pseudo_log_likelihood(p, images), want, 1e-11 * std::fabs(want));
  }
}

}  // namespace
}  // namespace rbm
