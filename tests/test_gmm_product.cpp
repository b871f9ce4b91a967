// Product of Gaussian-mixture experts (host/gmm_product.hpp): the sheet's H = 2, C = 2 example in
// closed form, and the mixture against the product of experts normalized numerically on grids.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "host/errors.hpp"
#include "host/gmm_product.hpp"

namespace rbm {
namespace {

constexpr double kPi = std::numbers::pi;

// p_j(x) by the definition, in long double and without logs (independent of the library).
long double ref_expert_density(const GmmExpert& e, const double* x) {
  long double p = 0.0L;
  for (std::size_t k = 0; k < e.components(); ++k) {
    long double r2 = 0.0L;
    for (int i = 0; i < e.dim; ++i) {
      const long double diff = x[i] - e.means[k * e.dim + i];
      r2 += diff * diff;
    }
    p += e.weights[k] * std::pow(2.0L * std::numbers::pi_v<long double>, -e.dim / 2.0L) *
         std::exp(-r2 / 2.0L);
  }
  return p;
}

// prod_j p_j(x), unnormalized.
double ref_product(const std::vector<GmmExpert>& experts, const double* x) {
  long double p = 1.0L;
  for (const GmmExpert& e : experts) p *= ref_expert_density(e, x);
  return static_cast<double>(p);
}

// A uniform grid of n points on [lo, hi] with trapezoid weights.
struct Grid {
  std::vector<double> x, w;
};
Grid trapezoid_grid(double lo, double hi, int n) {
  Grid g;
  const double h = (hi - lo) / (n - 1);
  for (int i = 0; i < n; ++i) {
    g.x.push_back(lo + h * i);
    g.w.push_back(i == 0 || i == n - 1 ? h / 2 : h);
  }
  return g;
}

// Numeric check of a D = 1 or D = 2 product on the grid [-L, L]^D: returns the max abs error of
// the mixture density against prod_j p_j / (trapezoid integral), relative to the peak, and stores
// the log of the trapezoid integral.
//
// Tolerances: the integrand is a finite sum of Gaussians of variance 1/H (>= 1/3 here). The
// trapezoid rule on such a function converges geometrically, with error about
// exp(-2 pi^2 sigma^2 / h^2) relative, far below double round-off for h = 0.02 (1-D) and
// h = 0.05 (2-D); the tails beyond L (>= 10 standard deviations past every mean) are below
// 1e-20. What remains is round-off in sums of up to ~1e5 terms (worst case ~1e-13 relative,
// observed below 1e-15); the tests allow 1e-12.
double grid_error(const std::vector<GmmExpert>& experts, const GaussianMixture& mix, double L,
                  int n, double* log_integral) {
  const int dim = experts[0].dim;
  const Grid g = trapezoid_grid(-L, L, n);
  const int ny = dim == 2 ? n : 1;
  std::vector<double> prod(static_cast<std::size_t>(n) * ny);
  long double integral = 0.0L;
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < ny; ++b) {
      const double pt[2] = {g.x[a], dim == 2 ? g.x[b] : 0.0};
      const double f = ref_product(experts, pt);
      prod[a * ny + b] = f;
      integral += static_cast<long double>(f) * g.w[a] * (dim == 2 ? g.w[b] : 1.0);
    }
  }
  *log_integral = static_cast<double>(std::log(integral));
  double peak = 0.0, max_err = 0.0;
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < ny; ++b) {
      const double pt[2] = {g.x[a], dim == 2 ? g.x[b] : 0.0};
      const double want = static_cast<double>(prod[a * ny + b] / integral);
      const double got = std::exp(mixture_log_density(mix, std::span<const double>(pt, dim)));
      peak = std::max(peak, want);
      max_err = std::max(max_err, std::abs(got - want));
    }
  }
  return max_err / peak;
}

// (a) The sheet's example, H = 2, C = 2 in D = 2, against the closed form: component (a, b) has
// mean (u_1a + u_2b)/2, covariance I/2, weight proportional to alpha_1a alpha_2b
// exp(-|u_1a - u_2b|^2 / 4) (= exp(-(1/2) sum_j |u_j - m|^2), since each |u_j - m| is half the
// distance), and the normalizer sum alpha alpha N(u_1a; u_2b, 2I).
TEST(GmmProduct, SheetExampleTwoExpertsTwoComponents) {
  const GmmExpert e1{2, {0.3, 0.7}, {0.0, 0.0, 2.0, 0.0}};  // u_1a = (0,0), u_1b = (2,0)
  const GmmExpert e2{2, {0.6, 0.4}, {0.0, 2.0, 4.0, 2.0}};  // u_2a = (0,2), u_2b = (4,2)
  const GaussianMixture mix = product_of_gmm_experts({e1, e2});

  ASSERT_EQ(mix.components(), 4u);
  EXPECT_EQ(mix.dim, 2);
  EXPECT_EQ(mix.experts, 2);
  EXPECT_DOUBLE_EQ(mix.variance, 0.5);

  // Order (a,a), (a,b), (b,a), (b,b). |u_1 - u_2|^2: 4, 20, 8, 8.
  const double want_means[4][2] = {{0, 1}, {2, 1}, {1, 1}, {3, 1}};
  const double c[4] = {0.3 * 0.6 * std::exp(-4.0 / 4), 0.3 * 0.4 * std::exp(-20.0 / 4),
                       0.7 * 0.6 * std::exp(-8.0 / 4), 0.7 * 0.4 * std::exp(-8.0 / 4)};
  const double total = c[0] + c[1] + c[2] + c[3];
  double weight_sum = 0.0;
  for (int k = 0; k < 4; ++k) {
    EXPECT_NEAR(mix.means[2 * k], want_means[k][0], 1e-15) << "component " << k;
    EXPECT_NEAR(mix.means[2 * k + 1], want_means[k][1], 1e-15) << "component " << k;
    EXPECT_NEAR(mix.weights[k], c[k] / total, 1e-15) << "component " << k;
    EXPECT_NEAR(mix.log_weights[k], std::log(c[k] / total), 1e-13) << "component " << k;
    weight_sum += mix.weights[k];
  }
  EXPECT_NEAR(weight_sum, 1.0, 1e-15);
  // int N(x; u1, I) N(x; u2, I) dx = N(u1; u2, 2I) = exp(-|u1 - u2|^2 / 4) / (4 pi) in D = 2.
  EXPECT_NEAR(mix.log_normalizer, std::log(total / (4 * kPi)), 1e-14);
}

// H = 1: the product is the expert itself.
TEST(GmmProduct, SingleExpertIsItself) {
  const GmmExpert e{2, {0.2, 0.5, 0.3}, {1.0, -1.0, 0.5, 2.0, -3.0, 0.0}};
  const GaussianMixture mix = product_of_gmm_experts({e});
  EXPECT_DOUBLE_EQ(mix.variance, 1.0);
  EXPECT_NEAR(mix.log_normalizer, 0.0, 1e-15);
  for (std::size_t k = 0; k < 3; ++k) EXPECT_NEAR(mix.weights[k], e.weights[k], 1e-15);
  EXPECT_EQ(mix.means, e.means);
}

// (b) 1-D: mixture density against the numerically normalized product; (d) its log normalizer
// against the log of the trapezoid integral. Includes experts with different component counts.
TEST(GmmProduct, OneDimensionalDensityMatchesNormalizedProductOnGrid) {
  const std::vector<std::vector<GmmExpert>> cases = {
      {{1, {0.5, 0.5}, {-1.0, 1.5}}, {1, {0.2, 0.8}, {0.5, 2.0}}},
      {{1, {0.3, 0.7}, {-2.0, 1.0}},
       {1, {0.1, 0.6, 0.3}, {-1.0, 0.0, 3.0}},
       {1, {0.5, 0.5}, {0.5, -0.5}}},
  };
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const GaussianMixture mix = product_of_gmm_experts(cases[c]);
    double log_integral = 0.0;
    const double err = grid_error(cases[c], mix, 12.0, 1201, &log_integral);  // h = 0.02
    EXPECT_LT(err, 1e-12) << "case " << c;
    EXPECT_NEAR(mix.log_normalizer, log_integral, 1e-12) << "case " << c;
  }
}

// (c) 2-D, H = 3, C = 2 (8 components), same check; (d) the log normalizer likewise.
TEST(GmmProduct, TwoDimensionalThreeExpertsMatchesNormalizedProductOnGrid) {
  const std::vector<GmmExpert> experts = {
      {2, {0.4, 0.6}, {-1.0, 0.0, 1.0, 1.0}},
      {2, {0.5, 0.5}, {0.0, -1.5, 0.5, 1.0}},
      {2, {0.9, 0.1}, {2.0, 0.0, -1.0, -1.0}},
  };
  const GaussianMixture mix = product_of_gmm_experts(experts);
  ASSERT_EQ(mix.components(), 8u);
  EXPECT_DOUBLE_EQ(mix.variance, 1.0 / 3.0);
  double log_integral = 0.0;
  const double err = grid_error(experts, mix, 8.0, 321, &log_integral);  // h = 0.05
  EXPECT_LT(err, 1e-12);
  EXPECT_NEAR(mix.log_normalizer, log_integral, 1e-12);
}

// The direct formula (sum of expert log densities minus the log normalizer) agrees with the
// mixture at points near and far (log domain: no underflow at |x| = 40).
TEST(GmmProduct, DirectProductLogDensityEqualsMixtureLogDensity) {
  const std::vector<GmmExpert> experts = {
      {2, {0.4, 0.6}, {-1.0, 0.0, 1.0, 1.0}},
      {2, {0.25, 0.25, 0.5}, {0.0, -1.5, 0.5, 1.0, 3.0, 3.0}},
      {2, {0.9, 0.1}, {2.0, 0.0, -1.0, -1.0}},
  };
  const GaussianMixture mix = product_of_gmm_experts(experts);
  const double points[][2] = {{0, 0}, {1, -1}, {0.3, 2.2}, {-5, 4}, {40, -40}};
  for (const auto& p : points) {
    const double want = product_log_density(experts, mix.log_normalizer, p);
    const double got = mixture_log_density(mix, p);
    EXPECT_TRUE(std::isfinite(got));
    EXPECT_NEAR(got, want, 1e-11 + 1e-13 * std::abs(want))
        << "x = (" << p[0] << ", " << p[1] << ")";
  }
}

// (e) Equal alphas: the weights are not prod alpha (all 1/4). Means -s, +s in both experts; the
// pairs (a,b) and (b,a) are 2s apart, so their weight is exp(-(2s)^2 / 4) = exp(-s^2) times that
// of the coincident pairs. Mixing with the naive weights misses the numeric product badly.
TEST(GmmProduct, WeightsDecayWithDistanceNotAlphasAlone) {
  for (double s : {0.5, 1.0, 2.0, 3.0, 5.0}) {
    const GmmExpert e{1, {0.5, 0.5}, {-s, s}};
    const GaussianMixture mix = product_of_gmm_experts({e, e});
    ASSERT_EQ(mix.components(), 4u);
    EXPECT_NEAR(mix.log_weights[0], mix.log_weights[3], 1e-12) << "s = " << s;
    EXPECT_NEAR(mix.log_weights[1], mix.log_weights[2], 1e-12) << "s = " << s;
    EXPECT_NEAR(mix.log_weights[1] - mix.log_weights[0], -s * s, 1e-12) << "s = " << s;
    // Closed form: coincident pairs get 1 / (2 + 2 exp(-s^2)) each.
    EXPECT_NEAR(mix.weights[0], 0.5 / (1.0 + std::exp(-s * s)), 1e-15) << "s = " << s;
  }
  // s = 2: naive weights put half the mass at 0, where the product has e^-4 / (1 + e^-4) ~ 2%.
  const GmmExpert e{1, {0.5, 0.5}, {-2.0, 2.0}};
  const std::vector<GmmExpert> experts = {e, e};
  GaussianMixture naive = product_of_gmm_experts(experts);
  double log_integral = 0.0;
  EXPECT_LT(grid_error(experts, naive, 12.0, 1201, &log_integral), 1e-12);
  for (std::size_t k = 0; k < 4; ++k) {
    naive.weights[k] = 0.25;
    naive.log_weights[k] = std::log(0.25);
  }
  EXPECT_GT(grid_error(experts, naive, 12.0, 1201, &log_integral), 0.1);
}

// The weights depend on the means' differences only: shifting every mean by one vector changes none
// of them, even where the means are near 2^52 and their average rounds by whole units (a
// reviewer's case: from the rounded average the spread gained H times its rounding squared, and a
// weight of 0.127 became 0.043). The shifts keep every mean an exact double (integers below 2^53).
TEST(GmmProduct, WeightsDoNotChangeWhenEveryMeanIsShifted) {
  const std::vector<std::array<double, 2>> means = {{0.0, 1.0}, {1.0, 2.0}, {0.0, 3.0}};
  const auto product = [&](double shift) {
    std::vector<GmmExpert> experts;
    for (const auto& [u, v] : means) experts.push_back({1, {0.4, 0.6}, {u + shift, v + shift}});
    return product_of_gmm_experts(experts);
  };
  const GaussianMixture base = product(0.0);
  for (const double shift : {1024.0, 3.0 * 0x1p51, -0x1p52 - 7.0}) {
    SCOPED_TRACE(shift);
    const GaussianMixture shifted = product(shift);
    ASSERT_EQ(shifted.components(), base.components());
    for (std::size_t k = 0; k < base.components(); ++k) {
      // The differences are exact and their mean rounds at its own magnitude (a few units): the
      // log weights agree to a few ulps of the spreads (at most 12 here).
      EXPECT_NEAR(shifted.log_weights[k], base.log_weights[k], 1e-13) << "component " << k;
      // The component means move with the shift (rounded as the shifted average is).
      EXPECT_NEAR(shifted.means[k] - shift, base.means[k], std::fabs(shift) * 0x1p-52);
    }
  }
  // Components far apart and coincident ones near 2^60: (v, v, v) and (w, w, w) have spread 0 and
  // take the mass, half each; a mixed choice's spread is about 2^118.
  const double v = 0.1 * 0x1p60, w = 0.5 * 0x1p60;
  const GmmExpert far{1, {0.5, 0.5}, {v, w}};
  const GaussianMixture far_product = product_of_gmm_experts({far, far, far});
  ASSERT_EQ(far_product.components(), 8u);
  EXPECT_DOUBLE_EQ(far_product.weights[0], 0.5);
  EXPECT_DOUBLE_EQ(far_product.weights[7], 0.5);
  for (std::size_t k = 1; k < 7; ++k) EXPECT_EQ(far_product.weights[k], 0.0) << "component " << k;
}

// A zero alpha removes its components (log weight -inf, weight 0) and changes nothing else.
TEST(GmmProduct, ZeroWeightComponentDropsOut) {
  const GmmExpert a{1, {0.4, 0.6}, {-1.0, 1.0}};
  const GmmExpert b_with_zero{1, {0.0, 1.0}, {5.0, 0.5}};
  const GmmExpert b{1, {1.0}, {0.5}};
  const GaussianMixture with_zero = product_of_gmm_experts({a, b_with_zero});
  const GaussianMixture without = product_of_gmm_experts({a, b});
  ASSERT_EQ(with_zero.components(), 4u);
  EXPECT_EQ(with_zero.log_weights[0], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(with_zero.weights[0], 0.0);
  EXPECT_EQ(with_zero.weights[2], 0.0);
  EXPECT_NEAR(with_zero.log_normalizer, without.log_normalizer, 1e-15);
  for (double x : {-2.0, 0.0, 0.7, 3.0}) {
    EXPECT_NEAR(mixture_log_density(with_zero, {&x, 1}), mixture_log_density(without, {&x, 1}),
                1e-14);
  }
}

// (f) Bad inputs.
TEST(GmmProduct, RejectsBadInput) {
  const GmmExpert good{2, {0.5, 0.5}, {0.0, 0.0, 1.0, 1.0}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto rejects = [](const std::vector<GmmExpert>& experts) {
    EXPECT_THROW(product_of_gmm_experts(experts), InputError);
  };
  rejects({});                                                     // no experts
  rejects({good, GmmExpert{1, {0.5, 0.5}, {0.0, 1.0}}});           // mismatched D
  rejects({GmmExpert{0, {1.0}, {}}});                              // D = 0
  rejects({good, GmmExpert{2, {}, {}}});                           // C = 0
  rejects({good, GmmExpert{2, {0.5, 0.5}, {0.0, 0.0, 1.0}}});      // means not (C, D)
  rejects({good, GmmExpert{2, {0.5, 0.4}, {0, 0, 1, 1}}});         // weights sum to 0.9
  rejects({good, GmmExpert{2, {0.5, 0.5 + 2e-9}, {0, 0, 1, 1}}});  // off by 2e-9
  rejects({good, GmmExpert{2, {1.5, -0.5}, {0, 0, 1, 1}}});        // negative weight, sum 1
  rejects({good, GmmExpert{2, {nan, 0.5}, {0, 0, 1, 1}}});         // NaN weight
  rejects({good, GmmExpert{2, {inf, 0.5}, {0, 0, 1, 1}}});         // infinite weight
  rejects({good, GmmExpert{2, {0.5, 0.5}, {0, nan, 1, 1}}});       // NaN mean
  rejects({good, GmmExpert{2, {0.5, 0.5}, {0, 0, inf, 1}}});       // infinite mean
  rejects({good, GmmExpert{2, {0.5, 0.5}, {0, 0, 2e100, 1}}});     // a mean beyond 1e100
  // At the bound: finite weights that sum to 1 (a reviewer's {0} and {1e155} gave NaN weights).
  const GaussianMixture far =
      product_of_gmm_experts({GmmExpert{1, {1.0}, {0.0}}, GmmExpert{1, {1.0}, {1e100}}});
  EXPECT_EQ(far.weights, std::vector<double>{1.0});
  EXPECT_TRUE(std::isfinite(far.log_normalizer));
  // Too many components: 2^23 > 2^22, refused before allocating.
  rejects(std::vector<GmmExpert>(23, GmmExpert{1, {0.5, 0.5}, {0.0, 1.0}}));
  // 2^20 components are allowed, but not with D = 100 (components * D > 2^26).
  GmmExpert wide{100, {0.5, 0.5}, std::vector<double>(200, 0.0)};
  rejects(std::vector<GmmExpert>(20, wide));
  // Within 1e-9 of 1 is accepted.
  EXPECT_NO_THROW(product_of_gmm_experts({good, GmmExpert{2, {0.5, 0.5 + 5e-10}, {0, 0, 1, 1}}}));

  // Points of the wrong size.
  const GaussianMixture mix = product_of_gmm_experts({good, good});
  const double x3[3] = {0, 0, 0};
  EXPECT_THROW(mixture_log_density(mix, {x3, 3}), InputError);
  EXPECT_THROW(expert_log_density(good, {x3, 1}), InputError);
  EXPECT_THROW(product_log_density({good, good}, mix.log_normalizer, {x3, 3}), InputError);

  // The densities check their experts as the product does (a tester's expert with 2 of its 4
  // mean entries gave a finite density), and a mixture's sizes.
  const double x2[2] = {0.5, 0.25};
  const GmmExpert short_means{2, {0.5, 0.5}, {0.0, 0.0}};
  EXPECT_THROW(expert_log_density(short_means, {x2, 2}), InputError);
  EXPECT_THROW(product_log_density({good, short_means}, 0.0, {x2, 2}), InputError);
  EXPECT_THROW(product_log_density({}, 0.0, {x2, 2}), InputError);
  EXPECT_THROW(expert_log_density(GmmExpert{2, {0.5, 0.4}, {0, 0, 1, 1}}, {x2, 2}), InputError);
  GaussianMixture torn = mix;
  torn.means.pop_back();
  EXPECT_THROW(mixture_log_density(torn, {x2, 2}), InputError);
  torn = mix;
  torn.log_weights.pop_back();
  EXPECT_THROW(mixture_log_density(torn, {x2, 2}), InputError);
  for (const double variance : {0.0, -1.0, inf, nan}) {
    torn = mix;
    torn.variance = variance;
    EXPECT_THROW(mixture_log_density(torn, {x2, 2}), InputError) << variance;
  }
  torn = mix;
  torn.weights.clear();
  torn.log_weights.clear();
  torn.means.clear();
  EXPECT_THROW(mixture_log_density(torn, {x2, 2}), InputError);  // K = 0
  EXPECT_TRUE(std::isfinite(mixture_log_density(mix, {x2, 2})));
}

// A NaN coordinate gives NaN from every density, whichever component is nearest (std::max in the
// log-sum-exp skipped NaN terms: -inf came out, a density of 0); an infinite one gives -inf.
TEST(GmmProduct, DensitiesOfNonFinitePoints) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const GmmExpert e1{2, {0.3, 0.7}, {0.0, 0.0, 2.0, 0.0}};
  const GmmExpert e2{2, {0.6, 0.4}, {0.0, 2.0, 4.0, 2.0}};
  const GaussianMixture mix = product_of_gmm_experts({e1, e2});
  for (const std::array<double, 2>& x : {std::array<double, 2>{nan, 0.0}, {0.0, nan}, {nan, nan}}) {
    EXPECT_TRUE(std::isnan(expert_log_density(e1, x))) << x[0] << " " << x[1];
    EXPECT_TRUE(std::isnan(mixture_log_density(mix, x))) << x[0] << " " << x[1];
    EXPECT_TRUE(std::isnan(product_log_density({e1, e2}, mix.log_normalizer, x)))
        << x[0] << " " << x[1];
  }
  for (const std::array<double, 2>& x : {std::array<double, 2>{inf, 0.0}, {0.0, -inf}}) {
    EXPECT_EQ(expert_log_density(e1, x), -inf) << x[0] << " " << x[1];
    EXPECT_EQ(mixture_log_density(mix, x), -inf) << x[0] << " " << x[1];
    EXPECT_EQ(product_log_density({e1, e2}, mix.log_normalizer, x), -inf) << x[0] << " " << x[1];
  }
}

}  // namespace
}  // namespace rbm
