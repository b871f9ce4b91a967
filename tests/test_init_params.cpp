// init_params (host/model.cpp) against what README.md and host/model.hpp promise: W ~ N(0,
// init_std^2) (Philox normals by Box-Muller), b = 0, and with --visible-bias a_i = log(m_i / (1 -
// m_i)) for the training images' pixel means m_i clamped to [1e-3, 1 - 1e-3].
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// The bounds below are z = 5.5 standard deviations on each side: a two-sided normal tail of
// 2 * 1.90e-8 = 3.8e-8 per check.
constexpr double kZ = 5.5;

// P(|Z| < 1) for Z ~ N(0, 1).
const double kWithinOneSd = std::erf(1.0 / std::sqrt(2.0));

// The quantile of chi-square with k degrees of freedom at normal quantile z, by Wilson-Hilferty:
// k (1 - c + z sqrt(c))^3 with c = 2 / (9k). For k ~ 78400 its error in the tail probability is a
// fraction of a percent (the cube of a normal matches chi-square's skewness and kurtosis to
// O(1/k)).
double chi_square_quantile(double k, double z) {
  const double c = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - c + z * std::sqrt(c), 3.0);
}

// W of a 784 x 100 model (78400 weights, independent normals if init_params is right) against
// N(0, sd^2), three checks at kZ each (failure probability under a correct init about 4e-8 each,
// 1.2e-7 for the three; see each):
//  - the sample mean: exactly N(0, sd^2 / n), so |mean| < kZ sd / sqrt(n) (3.8e-8). Fails a
//    half-normal (Box-Muller's radius without the angle) or an offset;
//  - the sample variance s^2: (n - 1) s^2 / sd^2 is chi-square(n - 1), so s^2 / sd^2 lies between
//    its quantiles at -kZ and kZ, 0.9725 and 1.0281 for n = 78400 (3.8e-8). Fails init_std taken as
//    the variance (sd 0.316 for 0.1), or sqrt(init_std);
//  - the fraction with |W| < sd: Binomial(n, 0.6827), within kZ binomial standard deviations
//    (130 of 78400, 0.17%; by the normal approximation, whose error in the tail at this n is well
//    under 10%: < 4.2e-8). Fails a uniform draw with the right variance (0.577).
// W is stored as float: the rounding moves each value by 6e-8 relative, nothing at these bounds.
void expect_normal_weights(const Recipe& recipe) {
  SCOPED_TRACE("seed " + std::to_string(recipe.seed) + ", init_std " +
               std::to_string(recipe.init_std));
  const Dataset data = test::patterned_images(784, 10, 1);
  const Params p = init_params(recipe, data);
  ASSERT_EQ(p.visible, 784);
  ASSERT_EQ(p.hidden, recipe.hidden);
  ASSERT_EQ(p.W.size(), static_cast<size_t>(784) * recipe.hidden);
  const double sd = recipe.init_std, n = static_cast<double>(p.W.size());
  double sum = 0.0;
  int64_t within = 0;
  for (const float w : p.W) {
    sum += w;
    within += std::fabs(w) < sd ? 1 : 0;
  }
  const double mean = sum / n;
  double squares = 0.0;
  for (const float w : p.W) squares += (w - mean) * (w - mean);
  const double variance = squares / (n - 1.0);
  std::printf("init_std %g: mean %.3g (bound %.3g), variance / sd^2 %.5f, within one sd %.5f\n", sd,
              mean, kZ * sd / std::sqrt(n), variance / (sd * sd), static_cast<double>(within) / n);

  EXPECT_LT(std::fabs(mean), kZ * sd / std::sqrt(n));
  EXPECT_GT(variance / (sd * sd), chi_square_quantile(n - 1.0, -kZ) / (n - 1.0));
  EXPECT_LT(variance / (sd * sd), chi_square_quantile(n - 1.0, kZ) / (n - 1.0));
  EXPECT_NEAR(static_cast<double>(within), kWithinOneSd * n,
              kZ * std::sqrt(n * kWithinOneSd * (1.0 - kWithinOneSd)));
}

// Two (seed, init_std) pairs: six checks, a correct init fails one with probability < 2.5e-7.
TEST(InitParams, WeightsAreNormalWithInitStd) {
  Recipe recipe;  // the reference recipe: 100 hidden units, init_std 0.1, seed 1
  expect_normal_weights(recipe);
  recipe.seed = 2;
  recipe.init_std = 0.01f;
  expect_normal_weights(recipe);
}

// The weights are independent, not only each N(0, sd^2): W is (784, H) row-major, and normals
// repeated across hidden units (W_ij = W_i0, every unit the same 784 weights) or across pixels
// (W_ij = W_0j) would pass every marginal check above. Two kinds of check, on the two recipes
// above:
//  - no two columns (hidden units) and no two rows (pixels) are equal: independent continuous
//    draws never coincide, so a correct init cannot fail this; it catches any copied column or row;
//  - the sample correlation at lag L of W in memory, r_L = sum_k W_k W_{k+L} / sum_k W_k^2, for
//    L = 1 (W_ij beside W_i,j+1: repeats across hidden units) and L = H (W_ij beside W_i+1,j:
//    repeats across pixels). For independent N(0, sd^2) values sqrt(n - L) r_L tends to N(0, 1)
//    (the products W_k W_{k+L} are uncorrelated, mean 0, variance sd^4, skewness 0; at n = 78400
//    the normal tail at kZ holds to a few percent), so |r_L| < kZ / sqrt(n - L): 3.8e-8 per check.
// With the six marginal checks (< 2.5e-7) and these four (< 1.6e-7), a correct init fails this
// file with probability < 4.1e-7 < 1e-6. Partial repeats are caught too once they make up about
// kZ / sqrt(n) = 2% of the pairs at a lag.
void expect_independent_weights(const Recipe& recipe) {
  SCOPED_TRACE("seed " + std::to_string(recipe.seed) + ", init_std " +
               std::to_string(recipe.init_std));
  const Params p = init_params(recipe, test::patterned_images(784, 10, 1));
  const int d = p.visible, H = p.hidden;
  const auto column = [&](int j) {
    std::vector<float> c(static_cast<size_t>(d));
    for (int i = 0; i < d; ++i) c[i] = p.W[static_cast<size_t>(i) * H + j];
    return c;
  };
  std::vector<std::vector<float>> columns, rows;
  for (int j = 0; j < H; ++j) columns.push_back(column(j));
  for (int i = 0; i < d; ++i) {
    rows.emplace_back(p.W.begin() + static_cast<ptrdiff_t>(i) * H,
                      p.W.begin() + static_cast<ptrdiff_t>(i + 1) * H);
  }
  for (std::vector<std::vector<float>>* lines : {&columns, &rows}) {
    std::sort(lines->begin(), lines->end());
    EXPECT_TRUE(std::adjacent_find(lines->begin(), lines->end()) == lines->end())
        << (lines == &columns ? "two hidden units have the same weights"
                              : "two pixels have the same weights");
  }
  double squares = 0.0;
  for (const float w : p.W) squares += static_cast<double>(w) * w;
  const size_t n = p.W.size();
  for (const size_t lag : {size_t{1}, static_cast<size_t>(H)}) {
    double products = 0.0;
    for (size_t k = 0; k + lag < n; ++k) products += static_cast<double>(p.W[k]) * p.W[k + lag];
    const double r = products / squares, bound = kZ / std::sqrt(static_cast<double>(n - lag));
    std::printf("lag %zu: correlation %.3g (bound %.3g)\n", lag, r, bound);
    EXPECT_LT(std::fabs(r), bound) << "lag " << lag;
  }
}

TEST(InitParams, WeightsAreIndependent) {
  Recipe recipe;
  expect_independent_weights(recipe);
  recipe.seed = 2;
  recipe.init_std = 0.01f;
  expect_independent_weights(recipe);
}

// init_std scales the same normals: with the same seed, W(0.01) = W(0.1) * 0.01 / 0.1 up to the
// two float roundings (each half an ulp of the value: 2^-23 relative in all, slack 1%). Fails an
// init_std applied twice (W ~ sd^2) or not at all, and normals that depend on init_std.
TEST(InitParams, InitStdScalesTheSameNormals) {
  const Dataset data = test::patterned_images(784, 10, 1);
  Recipe wide, narrow;
  wide.init_std = 0.1f;
  narrow.init_std = 0.01f;
  const Params w = init_params(wide, data), v = init_params(narrow, data);
  ASSERT_EQ(w.W.size(), v.W.size());
  const double ratio = static_cast<double>(narrow.init_std) / wide.init_std;
  for (size_t k = 0; k < w.W.size(); ++k) {
    ASSERT_NEAR(v.W[k], w.W[k] * ratio, 1.01 * FLT_EPSILON * std::fabs(v.W[k])) << "W " << k;
  }
}

// b = 0 exactly, and a only with visible_bias; the hidden type is copied from the recipe.
TEST(InitParams, HiddenBiasesAreZeroAndNoVisibleBiasByDefault) {
  const Dataset data = test::patterned_images(784, 10, 1);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    Recipe recipe;
    recipe.hidden = 37;
    recipe.hidden_type = type;
    const Params p = init_params(recipe, data);
    ASSERT_EQ(p.b.size(), 37u);
    for (const float b : p.b) EXPECT_EQ(b, 0.0f);
    EXPECT_TRUE(p.a.empty());
    EXPECT_EQ(p.hidden_type, type);
    // W's 784 * 37 values are not a multiple of 4 (one Philox block): the last block is cut short.
    EXPECT_EQ(p.W.size(), 784u * 37u);
    EXPECT_NE(p.W.back(), 0.0f);
  }
}

// a_i = log(m_i / (1 - m_i)), m_i = (count of images with pixel i on) / rows clamped to [1e-3,
// 1 - 1e-3], recomputed here in double and rounded to float. The library may compute the same
// formula in another order (log m - log1p(-m), or the mean as a sum of 1/rows): such rewrites
// differ by a few double roundings, ~1e-15 relative, so the two floats differ by at most one
// float ulp (FLT_EPSILON relative bounds that). Fails a missing clamp (corner pixels, never on in
// the threes, would get -inf), a clamp at another bound, the sign flipped (log((1 - m) / m)), and
// means taken over another set of images.
void expect_visible_biases_are_clamped_logits(const Dataset& data) {
  Recipe recipe;
  recipe.visible_bias = true;
  const Params p = init_params(recipe, data);
  const int d = data.cols();
  ASSERT_EQ(p.a.size(), static_cast<size_t>(d));
  for (const float b : p.b) EXPECT_EQ(b, 0.0f);
  int clamped = 0;
  for (int i = 0; i < d; ++i) {
    int64_t on = 0;
    for (int64_t r = 0; r < data.rows; ++r) on += data.row(r)[i] ? 1 : 0;
    const double m = static_cast<double>(on) / static_cast<double>(data.rows);
    const double clamp = std::clamp(m, 1e-3, 1.0 - 1e-3);
    clamped += clamp != m ? 1 : 0;
    const float want = static_cast<float>(std::log(clamp / (1.0 - clamp)));
    ASSERT_TRUE(std::isfinite(p.a[i])) << "pixel " << i << ", mean " << m;
    EXPECT_NEAR(p.a[i], want, FLT_EPSILON * std::fabs(want)) << "pixel " << i << ", mean " << m;
  }
  EXPECT_GT(clamped, 0) << "no pixel exercised the clamp";
}

TEST(InitParams, VisibleBiasesAreLogitsOfClampedPixelMeansOnThrees) {
  const Dataset train = load_mnist(RBM_MNIST_DIR, 3, Split::train);
  expect_visible_biases_are_clamped_logits(train);
}

// Both ends of the clamp and an exact 1/2 (a = 0), on 4 images of 4 pixels: pixel 0 always on
// (a = log 999), pixel 1 on in 2 of 4 (0), pixel 2 in 1 of 4 (log 1/3), pixel 3 never (-log 999).
TEST(InitParams, VisibleBiasesClampBothEnds) {
  const Dataset data = test::bit_images(4, {0b0011, 0b0111, 0b0001, 0b0001});
  expect_visible_biases_are_clamped_logits(data);
  Recipe recipe;
  recipe.visible_bias = true;
  const Params p = init_params(recipe, data);
  EXPECT_NEAR(p.a[0], std::log(999.0), 1e-5);
  EXPECT_EQ(p.a[1], 0.0f);
  EXPECT_NEAR(p.a[2], std::log(1.0 / 3.0), 1e-6);
  EXPECT_NEAR(p.a[3], -std::log(999.0), 1e-5);
}

// The bound sample checks before it trusts float sums: the largest of each hidden unit's |b_j| +
// sum_i |W_ij| (4.5 and 7 here) and each visible unit's |a_i| + sum_j |W_ij| (13 and 7).
TEST(ModelBounds, LargestPreactivationIsTheLargestAbsoluteSumOfAUnit) {
  Params p;
  p.visible = 2;
  p.hidden = 2;
  p.W = {1.0f, -2.0f, 3.0f, 4.0f};  // (2, 2), row-major
  p.b = {0.5f, -1.0f};
  EXPECT_EQ(largest_preactivation(p), 7.0);
  p.a = {-10.0f, 0.0f};
  EXPECT_EQ(largest_preactivation(p), 13.0);
  p.b = {-20.0f, 0.0f};
  EXPECT_EQ(largest_preactivation(p), 24.0);
  // In double: float's largest values add up beyond FLT_MAX without overflow, and a bias of 1e32
  // is not lost beside them (double's ulp there is 1.5e23).
  p.a = {1e32f, 0.0f};
  p.W = {FLT_MAX, FLT_MAX, 0.0f, 0.0f};
  EXPECT_DOUBLE_EQ(largest_preactivation(p), 2.0 * FLT_MAX + double{1e32f});
}

}  // namespace
}  // namespace rbm
