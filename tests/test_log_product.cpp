// host/log_product.hpp's four-lane exp and products, and AIS's hidden increment built on them,
// against long-double references.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "host/ais.hpp"
#include "host/log_product.hpp"

namespace rbm {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A fixed sequence of doubles in [0, 1): the tests' inputs, the same on every machine.
struct Lcg {
  uint64_t state;
  double next() {
    state = state * 6364136223846793005u + 1442695040888963407u;
    return static_cast<double>(state >> 11) * 0x1p-53;
  }
};

TEST(LogProduct, Exp4NonpositiveIsWithinTwoUlpOfExp) {
  // Every binade of -x from 2^-60 to 708, and a dense sweep of [-708, 0]; the error in units of
  // the result's double epsilon, against expl (64-bit mantissa, 11 more bits than double).
  std::vector<double> xs;
  for (int e = -60; e <= 9; ++e) {
    for (int k = 0; k < 1000; ++k) {
      const double x = -std::ldexp(1.0 + k / 1000.0, e);
      if (x >= -708.0) xs.push_back(x);
    }
  }
  for (int k = 0; k <= 708000; ++k) xs.push_back(-k * 1e-3);
  xs.push_back(-708.0);
  double worst = 0.0;
  for (size_t i = 0; i + 4 <= xs.size(); i += 4) {
    const Double4 got = exp4_nonpositive(Double4{xs[i], xs[i + 1], xs[i + 2], xs[i + 3]});
    for (int lane = 0; lane < 4; ++lane) {
      const long double want = std::exp(static_cast<long double>(xs[i + lane]));
      const double ulps = static_cast<double>(std::fabs(got[lane] - want) / (want * DBL_EPSILON));
      worst = std::max(worst, ulps);
      ASSERT_LE(ulps, 2.0) << "x " << xs[i + lane];
    }
  }
  std::printf("exp4_nonpositive: worst error %.2f ulp over %zu arguments\n", worst, xs.size());
  // 0 and -0 give 1; below -708 (results next to DBL_MIN and under) and -inf give 0; NaN stays.
  const Double4 special =
      exp4_nonpositive(Double4{0.0, -0.0, -708.5, -std::numeric_limits<double>::infinity()});
  EXPECT_EQ(special[0], 1.0);
  EXPECT_EQ(special[1], 1.0);
  EXPECT_EQ(special[2], 0.0);
  EXPECT_EQ(special[3], 0.0);
  EXPECT_TRUE(std::isnan(exp4_nonpositive(Double4{kNaN, -1e4, -1.0, kNaN})[0]));
}

// log_product of the factors f against the sum of their logs in long double. Each factor's lane
// takes one rounding per multiplication (relative 2^-53), the final combination and log a few
// more: |error| <= (n + 8) 2^-53 + 2^-52 |result|.
void expect_log_product_matches(const std::vector<double>& f, double max_factor_log) {
  const int n = static_cast<int>(f.size());
  long double want = 0.0L;
  for (const double v : f) want += std::log(static_cast<long double>(v));
  const double got = log_product(
      n, [&](int k) { return f[k]; }, [&](int k) { return load4(f.data() + k); }, max_factor_log);
  const double bound = (n + 8) * 0x1p-53 + 0x1p-52 * std::fabs(static_cast<double>(want));
  EXPECT_NEAR(got, static_cast<double>(want), bound) << "n " << n;
}

TEST(LogProduct, FactorsOnBothSidesOfOneMatchTheSumOfTheirLogs) {
  Lcg lcg{7};
  // Every tail length (n % 16) and whole groups, factors in [1/3, 3].
  for (int n = 0; n <= 40; ++n) {
    std::vector<double> f(static_cast<size_t>(n));
    for (double& v : f) v = std::exp((2.0 * lcg.next() - 1.0) * std::log(3.0));
    expect_log_product_matches(f, std::log(3.0));
  }
  // 20000 factors of 1/3: 1250 per lane, whose product 3^-1250 would underflow without the
  // renormalization every 644 (708 / log 3) factors; and as many of 3, which would overflow.
  expect_log_product_matches(std::vector<double>(20000, 1.0 / 3.0), std::log(3.0));
  expect_log_product_matches(std::vector<double>(20000, 3.0), std::log(3.0));
  std::vector<double> with_nan(100, 0.5);
  with_nan[57] = kNaN;
  EXPECT_TRUE(std::isnan(log_product(
      100, [&](int k) { return with_nan[k]; }, [&](int k) { return load4(with_nan.data() + k); },
      std::numbers::ln2)));
}

// The unit's log sum, log sum_h exp(h t), in long double: softplus, or log(1 + 2 cosh t).
long double log_sum_reference(HiddenType type, long double t) {
  const long double e = std::exp(-std::fabs(t));
  return type == HiddenType::ternary ? std::fabs(t) + std::log1p(e + e * e)
                                     : std::max(t, 0.0L) + std::log1p(e);
}

TEST(AisHiddenIncrement, MatchesLongDoubleForBothKindsOfUnit) {
  // Steps like ais_betas' (the first from 0, small ones near 1, and one from 0 to 1), H over the
  // tail lengths of the four-lane products and beyond, u up to +-200 (e^-200 terms) with zeros.
  // Each unit's term takes a few roundings of values of size at most 1 + beta |u_j| (the exps
  // within 2 ulp): |error| <= 16 2^-53 sum_j (1 + |u_j|).
  const std::vector<std::pair<double, double>> steps = {
      {1e-3, 0.0}, {0.5001, 0.5}, {0.90001, 0.9}, {1.0, 0.99999}, {1.0, 0.0}};
  Lcg lcg{11};
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const int H : {1, 3, 4, 5, 15, 16, 17, 100, 513}) {
      std::vector<float> u(static_cast<size_t>(H));
      double size = 0.0;
      for (int j = 0; j < H; ++j) {
        const double scale = j % 7 == 3 ? 200.0 : 30.0;
        u[j] = j % 11 == 5 ? 0.0f : static_cast<float>((2.0 * lcg.next() - 1.0) * scale);
        size += 1.0 + std::fabs(u[j]);
      }
      for (const auto& [beta, beta_prev] : steps) {
        long double want = 0.0L;
        for (const float uj : u) {
          want += log_sum_reference(type, static_cast<long double>(beta) * uj) -
                  log_sum_reference(type, static_cast<long double>(beta_prev) * uj);
        }
        EXPECT_NEAR(ais_hidden_increment(type, u.data(), H, beta, beta_prev),
                    static_cast<double>(want), 16 * 0x1p-53 * size)
            << hidden_type_name(type) << " H " << H << " beta " << beta << " from " << beta_prev;
      }
    }
  }
}

}  // namespace
}  // namespace rbm
