// The math both builds share (kernels/rbm_math.h), against long-double references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

long double ref_sigmoid(long double t) { return 1.0L / (1.0L + std::exp(-t)); }

// Relative error in units of float epsilon (2^-23); an absolute error below FLT_MIN counts as 0
// (results under the normal range are not promised to be relative-accurate).
double ulp_error(float got, long double want) {
  const long double diff = std::fabs(static_cast<long double>(got) - want);
  if (diff < FLT_MIN) return 0.0;
  return static_cast<double>(diff / (std::fabs(want) * FLT_EPSILON));
}

// Arguments: a dense sweep of [-100, 100] plus values around the branch points.
std::vector<float> sweep() {
  std::vector<float> t;
  for (int k = -200000; k <= 200000; ++k) t.push_back(static_cast<float>(k) * 5e-4f);
  for (float v : {1e-30f, 1e-10f, 1e-5f, 0.3f, 15.9f, 16.7f, 87.0f, 87.4f, 88.8f, 103.9f}) {
    t.push_back(v);
    t.push_back(-v);
  }
  return t;
}

TEST(Math, ExpNonpositiveIsWithinTwoUlp) {
  // Cephes' expf scheme is documented at about 1 ulp; allow 2 for the scaling step.
  double worst = 0.0;
  for (float x : sweep()) {
    if (x > 0.0f || x < -87.3365f) continue;
    worst = std::max(worst, ulp_error(exp_nonpositive(x), std::exp(static_cast<long double>(x))));
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp_nonpositive(-kInf), 0.0f);
  EXPECT_EQ(exp_nonpositive(-100.0f), 0.0f);
  EXPECT_TRUE(std::isnan(exp_nonpositive(std::nanf(""))));
}

TEST(Math, Expm1NonpositiveIsWithinTwoUlp) {
  // The series side (x > -1/2) and exp_nonpositive's side, the switch between them, and the tiny
  // arguments where e^x - 1 ~ x (every binade down to the subnormals).
  std::vector<float> xs;
  for (const float t : sweep()) {
    if (t <= 0.0f) xs.push_back(t);
  }
  for (int k = 0; k <= 100000; ++k) xs.push_back(-0.45f - 1e-6f * static_cast<float>(k));
  for (int e = -149; e <= 0; ++e) xs.push_back(-std::ldexp(1.3f, e));
  double worst = 0.0;
  for (const float x : xs) {
    const double ulps = ulp_error(expm1_nonpositive(x), std::expm1(static_cast<long double>(x)));
    worst = std::max(worst, ulps);
    ASSERT_LE(ulps, 2.0) << x;
  }
  std::printf("expm1_nonpositive: worst error %.2f ulp over %zu arguments\n", worst, xs.size());
  EXPECT_EQ(expm1_nonpositive(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(expm1_nonpositive(-0.0f)));  // e^-0 - 1 = -0
  EXPECT_FALSE(std::signbit(ternary_mean(0.0f)));       // G(+0) = +0, G(-0) = -0
  EXPECT_TRUE(std::signbit(ternary_mean(-0.0f)));
  EXPECT_EQ(expm1_nonpositive(-kInf), -1.0f);
  EXPECT_EQ(expm1_nonpositive(-200.0f), -1.0f);
  EXPECT_TRUE(std::isnan(expm1_nonpositive(std::nanf(""))));
}

TEST(Math, SigmoidIsExactToFloatRounding) {
  // exp (<= 2 ulp, scaled down by e / (1 + e) <= 1/2 in the sum), one add, one divide and for
  // t < 0 one multiply: at most 4 ulp relative. Results below FLT_MIN are checked absolutely.
  double worst = 0.0;
  for (float t : sweep()) worst = std::max(worst, ulp_error(sigmoid(t), ref_sigmoid(t)));
  EXPECT_LE(worst, 4.0);
}

TEST(Math, SigmoidHandlesExtremes) {
  EXPECT_EQ(sigmoid(0.0f), 0.5f);
  EXPECT_EQ(sigmoid(kInf), 1.0f);
  EXPECT_EQ(sigmoid(-kInf), 0.0f);
  EXPECT_EQ(sigmoid(FLT_MAX), 1.0f);
  EXPECT_EQ(sigmoid(-FLT_MAX), 0.0f);
  EXPECT_EQ(sigmoid(-104.0f), 0.0f);  // true value 6.8e-46 is below the smallest denormal
  EXPECT_TRUE(std::isnan(sigmoid(std::nanf(""))));
  for (float t : sweep()) {
    const float s = sigmoid(t);
    ASSERT_TRUE(s >= 0.0f && s <= 1.0f) << t;
  }
}

TEST(Math, SoftplusAgreesWithLongDouble) {
  for (double t : {-800.0, -40.0, -1.0, -1e-8, 0.0, 1e-8, 0.5, 30.0, 800.0}) {
    const long double want = std::log1p(std::exp(static_cast<long double>(t)));
    EXPECT_NEAR(softplus(t), static_cast<double>(want),
                1e-15 * static_cast<double>(std::max(1.0L, want)))
        << t;
  }
}

// Against long double for pairs of the same sign, near and far apart (AIS takes beta u and
// beta' u with beta - beta' from 1e-5 to 1e-3): within 1e-15 of the larger softplus, plus 1e-15
// relative to the difference, which is what double rounding of the two terms allows.
TEST(Math, SoftplusDifferenceAgreesWithLongDouble) {
  for (double u : {-700.0, -40.0, -3.0, -1e-6, 0.0, 2e-7, 0.7, 25.0, 700.0}) {
    for (double step : {1e-5, 1e-3, 0.5}) {
      const double t1 = u, t2 = (1.0 - step) * u;
      const long double l1 = std::log1p(std::exp(static_cast<long double>(t1)));
      const long double l2 = std::log1p(std::exp(static_cast<long double>(t2)));
      const double want = static_cast<double>(l1 - l2);
      EXPECT_NEAR(softplus_difference(t1, t2), want,
                  1e-15 * (static_cast<double>(std::max({1.0L, l1, l2})) + std::fabs(want)))
          << u << " " << step;
    }
  }
}

// log_one_plus_two_cosh_difference (the ternary units' AIS increment on the device) against long
// double for pairs near and far apart, of either sign, as SoftplusDifferenceAgreesWithLongDouble
// (Ternary.ExtremePreactivations takes only t2 = t1 (1 - 1e-9), where the ratio's
// (1 + e1 + e2) could be almost anything): within 1e-15 of the larger log term plus 1e-15 relative
// to the difference.
TEST(Math, LogOnePlusTwoCoshDifferenceAgreesWithLongDouble) {
  for (double u : {-700.0, -40.0, -3.0, -0.7, -1e-6, 0.0, 2e-7, 0.7, 3.0, 25.0, 700.0}) {
    for (double step : {1e-5, 1e-3, 0.5, 1.0, 2.0}) {
      const double t1 = u, t2 = (1.0 - step) * u;
      const long double l1 = std::log(1.0L + 2.0L * std::cosh(static_cast<long double>(t1)));
      const long double l2 = std::log(1.0L + 2.0L * std::cosh(static_cast<long double>(t2)));
      const double want = static_cast<double>(l1 - l2);
      EXPECT_NEAR(log_one_plus_two_cosh_difference(t1, t2), want,
                  1e-15 * (static_cast<double>(std::max({1.0L, l1, l2})) + std::fabs(want)))
          << u << " " << step;
    }
  }
}

TEST(Math, TernaryMeanAndLogPartitionAreStable) {
  for (float t : sweep()) {
    const long double lt = t;
    const long double want = 2.0L * std::sinh(lt) / (1.0L + 2.0L * std::cosh(lt));
    // Same error budget as the sigmoid plus the e^2 terms: 8 ulp.
    ASSERT_LE(ulp_error(ternary_mean(t), want), 8.0) << t;
    ASSERT_EQ(ternary_mean(-t), -ternary_mean(t)) << t;
    const long double log_want = std::log(1.0L + 2.0L * std::cosh(lt));
    ASSERT_NEAR(log_one_plus_two_cosh(t), static_cast<double>(log_want),
                1e-14 * static_cast<double>(std::max(1.0L, log_want)))
        << t;
  }
  EXPECT_EQ(ternary_mean(kInf), 1.0f);
  EXPECT_EQ(ternary_mean(-kInf), -1.0f);
  EXPECT_EQ(ternary_mean(0.0f), 0.0f);
  EXPECT_NEAR(log_one_plus_two_cosh(1e6), 1e6, 1e-9);
}

TEST(Math, UniformFromBitsMatchesCurandsMap) {
  EXPECT_EQ(uniform_from_bits(0), 0x1p-33f);
  EXPECT_EQ(uniform_from_bits(0xFFFFFFFFu), 1.0f);  // curand_uniform can return 1, never 0
  EXPECT_GT(uniform_from_bits(0), 0.0f);
  EXPECT_EQ(uniform_from_bits(1u << 31), 0.5f);
}

TEST(Math, IndexFromBitsStaysInRange) {
  EXPECT_EQ(index_from_bits(0, 7141), 0u);
  EXPECT_EQ(index_from_bits(0xFFFFFFFFu, 7141), 7140u);
  EXPECT_EQ(index_from_bits(0x80000000u, 10), 5u);
}

// Draw counts must lie within z standard deviations of n p. z = 6: a two-sided normal tail of
// 2e-9 per check, so the few dozen checks below fail together with probability < 1e-7.
constexpr double kZ = 6.0;

TEST(Math, BernoulliFrequenciesWithinBinomialBounds) {
  const uint64_t key = philox_key(7, Purpose::sample);
  constexpr int kDraws = 1 << 20;
  for (float p : {0.001f, 0.1f, 0.5f, 0.9f, sigmoid(1.3f)}) {
    int64_t ones = 0;
    for (int u = 0; u < kDraws; ++u) {
      ones +=
          static_cast<int64_t>(bernoulli(philox_uniform(key, 3, 1, static_cast<uint32_t>(u)), p));
    }
    const double mean = kDraws * static_cast<double>(p);
    const double sd = std::sqrt(mean * (1.0 - p));
    EXPECT_NEAR(static_cast<double>(ones), mean, kZ * sd) << "p = " << p;
  }
}

TEST(Math, TernaryDrawFrequenciesWithinBinomialBounds) {
  const uint64_t key = philox_key(11, Purpose::sample);
  constexpr int kDraws = 1 << 20;
  for (float t : {-2.0f, -0.3f, 0.0f, 0.7f, 3.0f}) {
    int64_t count[3] = {0, 0, 0};  // h = -1, 0, 1
    for (int u = 0; u < kDraws; ++u) {
      const float h = ternary_draw(philox_uniform(key, 5, 2, static_cast<uint32_t>(u)), t);
      ++count[static_cast<int>(h) + 1];
    }
    const double norm = std::exp(-t) + 1.0 + std::exp(t);
    const double p[3] = {std::exp(-t) / norm, 1.0 / norm, std::exp(t) / norm};
    for (int s = 0; s < 3; ++s) {
      const double mean = kDraws * p[s];
      EXPECT_NEAR(static_cast<double>(count[s]), mean, kZ * std::sqrt(mean * (1.0 - p[s])))
          << "t = " << t << " h = " << s - 1;
    }
  }
}

}  // namespace
}  // namespace rbm
