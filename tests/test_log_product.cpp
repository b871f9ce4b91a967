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

TEST(LogProduct, Exp4IsWithinTwoUlpOfExp) {
  // Every binade of |x| from 2^-60 to 708, both signs, and a dense sweep of [-708, 708]; the error
  // in units of the result's double epsilon, against expl (64-bit mantissa, 11 more bits than
  // double).
  std::vector<double> xs;
  for (int e = -60; e <= 9; ++e) {
    for (int k = 0; k < 1000; ++k) {
      const double x = std::ldexp(1.0 + k / 1000.0, e);
      if (x <= 708.0) {
        xs.push_back(x);
        xs.push_back(-x);
      }
    }
  }
  for (int k = -708000; k <= 708000; ++k) xs.push_back(k * 1e-3);
  while (xs.size() % 4 != 0) xs.push_back(0.0);
  double worst = 0.0;
  for (size_t i = 0; i < xs.size(); i += 4) {
    const Double4 got = exp4(Double4{xs[i], xs[i + 1], xs[i + 2], xs[i + 3]});
    for (int lane = 0; lane < 4; ++lane) {
      const long double want = std::exp(static_cast<long double>(xs[i + lane]));
      const double ulps = static_cast<double>(std::fabs(got[lane] - want) / (want * DBL_EPSILON));
      worst = std::max(worst, ulps);
      ASSERT_LE(ulps, 2.0) << "x " << xs[i + lane];
    }
  }
  std::printf("exp4: worst error %.2f ulp over %zu arguments\n", worst, xs.size());
  // 0 and -0 give 1; below -708 and -inf give 0, above 708 and +inf give +inf; NaN stays.
  const double inf = std::numeric_limits<double>::infinity();
  const Double4 special = exp4(Double4{0.0, -0.0, -708.5, -inf});
  EXPECT_EQ(special[0], 1.0);
  EXPECT_EQ(special[1], 1.0);
  EXPECT_EQ(special[2], 0.0);
  EXPECT_EQ(special[3], 0.0);
  const Double4 high = exp4(Double4{708.5, inf, kNaN, 1.0});
  EXPECT_EQ(high[0], inf);
  EXPECT_EQ(high[1], inf);
  EXPECT_TRUE(std::isnan(high[2]));
}

TEST(LogProduct, ScaledExpAndLog1pScaledMatchLongDouble) {
  // scaled_exp(x) = e^x far outside the doubles (the PLL's e^{-sum_j u(t_j)}, sums of thousands):
  // mantissa 2^exponent against expl's mantissa and exponent, to 2 ulp plus x's own 2^-53 |x|.
  for (const double x : {0.0, 1e-300, -1.0, 0.5, 700.0, -745.5, 1000.25, -5000.125, 12345.678}) {
    const ScaledDouble got = scaled_exp(x);
    const long double want = std::exp(static_cast<long double>(x) -
                                      static_cast<long double>(got.exponent) * std::log(2.0L));
    EXPECT_NEAR(got.mantissa, static_cast<double>(want),
                static_cast<double>(want) * (2.0 + std::fabs(x)) * DBL_EPSILON)
        << x;
    EXPECT_GE(got.mantissa, 0.7);
    EXPECT_LE(got.mantissa, 1.42);
  }
  // log1p_scaled(m 2^e) = log(1 + m 2^e): in the doubles, above 2^60, subnormal and below.
  for (const double m : {1.0, 1.5, 3000.0}) {
    for (const int64_t e : {int64_t{-5000}, int64_t{-1001}, int64_t{-60}, int64_t{-1}, int64_t{0},
                            int64_t{7}, int64_t{59}, int64_t{61}, int64_t{400}, int64_t{5000}}) {
      const long double x = std::ldexp(static_cast<long double>(m), static_cast<int>(e));
      const long double want = x > 1e300L ? std::log(static_cast<long double>(m)) +
                                                static_cast<long double>(e) * std::log(2.0L)
                                          : std::log1p(x);
      const double got = log1p_scaled({m, e});
      EXPECT_NEAR(got, static_cast<double>(want), 2.0 * DBL_EPSILON * static_cast<double>(want))
          << m << " 2^" << e;
    }
  }
  EXPECT_TRUE(std::isnan(log1p_scaled({kNaN, 3})));
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
  // 20000 units at u = +-800 from beta 0 to 1: every factor at its bound (1/2, or 1/3 ternary:
  // e1 = e^-800 = 0), so each lane of the product passes its renormalization point (644 factors
  // of 1/3, 1021 of 1/2) several times. log_sum(+-800) - log_sum(0) = 800 - log 2 (binary, +800;
  // -log 2 at -800) or 800 - log 3 (ternary, either sign), to rounding.
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    const int H = 20000;
    std::vector<float> u(static_cast<size_t>(H));
    long double want = 0.0L;
    for (int j = 0; j < H; ++j) {
      u[j] = j % 2 == 0 ? 800.0f : -800.0f;
      want += log_sum_reference(type, u[j]) - log_sum_reference(type, 0.0L);
    }
    const double size = H * 801.0;
    EXPECT_NEAR(ais_hidden_increment(type, u.data(), H, 1.0, 0.0), static_cast<double>(want),
                16 * 0x1p-53 * size)
        << hidden_type_name(type) << " at the factors' bound";
  }
}

}  // namespace
}  // namespace rbm
