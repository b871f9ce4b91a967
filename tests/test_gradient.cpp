// The gradients on a tiny RBM by enumeration: exact_gradient against finite differences of the
// exact log-likelihood, and CD-k's mean change against its exact expectation (the k-step Gibbs
// kernel from each image), which approaches the exact gradient as k grows: design.md's estimator,
// and a check that nothing in the chain is biased.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// Mean and standard deviation of each parameter's single-iteration change with lr = 1, which is
// the CD-k gradient of that iteration, over iterations [0, n).
struct GradientStats {
  std::vector<double> mean, sd;
};

GradientStats cd_gradient_stats(const Params& start, const Dataset& data, int k, int64_t n) {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(data);
  Recipe recipe;
  recipe.k = k;
  recipe.lr = 1.0f;
  recipe.seed = 2024;
  const auto flatten = [](const Params& p) {
    std::vector<double> v(p.W.begin(), p.W.end());
    v.insert(v.end(), p.b.begin(), p.b.end());
    v.insert(v.end(), p.a.begin(), p.a.end());
    return v;
  };
  const std::vector<double> base = flatten(start);
  std::vector<double> sum(base.size(), 0.0), sum_sq(base.size(), 0.0);
  for (int64_t t = 0; t < n; ++t) {
    backend->set_params(start);
    backend->train_cd(recipe, t, 1);
    const std::vector<double> after = flatten(backend->get_params());
    for (size_t q = 0; q < base.size(); ++q) {
      const double g = after[q] - base[q];
      sum[q] += g;
      sum_sq[q] += g * g;
    }
  }
  GradientStats stats;
  for (size_t q = 0; q < base.size(); ++q) {
    const double mean = sum[q] / static_cast<double>(n);
    stats.mean.push_back(mean);
    stats.sd.push_back(std::sqrt(std::max(0.0, sum_sq[q] / static_cast<double>(n) - mean * mean)));
  }
  return stats;
}

// exact_gradient for binary hidden units (E_data - E_model of x sigm(t)', sigm(t), x by
// enumeration) against central differences of the exact mean log p(x) = -mean F(x) - log Z, both
// in double, with and without visible biases (the ternary twin is in tests/test_ternary.cpp).
// Tolerance per parameter p, step h = 1e-3 (p +- h rounded to float; the step taken is their exact
// difference in double):
//  - truncation: h^2 / 6 max |f'''|. Each derivative of log p(x) in one parameter is a cumulant of
//    a statistic S in [0, 1] (x_i h_j, h_j or x_i) under p(h | x) (the data term) minus one under
//    p(x, h) (log Z), and |E (S - E S)^3| <= E (S - E S)^2 <= 1/4: |f'''| <= 1/2, so h^2 / 12;
//  - the rounding of p +- h moves the differences' centre c by |c - p| <= u (|p| + h), u = 2^-24,
//    which moves f' by at most max |f''| |c - p| <= (1/2) u (|p| + h) (|f''| <= 1/4 + 1/4 alike);
//  - exact_gradient returns floats: u |g| <= u;
//  - double rounding of the two log-likelihoods (log Z's product walk: d x 258 x 1.1e-16 = 2e-13
//    each at d = 6) over the step 2e-3: 2e-10; 1e-9 for it.
// About 2.6e-7 in all; a gradient that dropped b from t, or the model term, is off by > 1e-2.
TEST(Gradient, ExactGradientMatchesFiniteDifferencesOfTheLogLikelihood) {
  const Dataset data = test::bit_images(6, {0b000111, 0b111000, 0b101010, 0b110011, 0b001100});
  for (const bool visible_bias : {false, true}) {
    SCOPED_TRACE(visible_bias ? "visible bias" : "no visible bias");
    const Params p = test::random_params(6, 4, 0.8f, 72, visible_bias);
    const auto log_likelihood = [&](const Params& q) {
      double sum = 0.0;
      for (int64_t r = 0; r < data.rows; ++r) sum -= free_energy(q, data.row(r));
      return sum / static_cast<double>(data.rows) - exact_log_partition(q);
    };
    const Params grad = exact_gradient(p, data);
    ASSERT_EQ(grad.a.size(), p.a.size());
    constexpr float kStep = 1e-3f;
    const double u = FLT_EPSILON / 2.0;
    const auto check = [&](std::vector<float> Params::*field, const std::vector<float>& want,
                           const char* name) {
      for (size_t q = 0; q < want.size(); ++q) {
        Params plus = p, minus = p;
        (plus.*field)[q] += kStep;
        (minus.*field)[q] -= kStep;
        const double step =
            static_cast<double>((plus.*field)[q]) - static_cast<double>((minus.*field)[q]);
        const double fd = (log_likelihood(plus) - log_likelihood(minus)) / step;
        const double h = kStep, value = std::fabs((p.*field)[q]);
        const double tolerance = h * h / 12.0 + 0.5 * u * (value + h) + u + 1e-9;
        EXPECT_NEAR(want[q], fd, tolerance) << name << "[" << q << "]";
      }
    };
    check(&Params::W, grad.W, "W");
    check(&Params::b, grad.b, "b");
    check(&Params::a, grad.a, "a");
  }
}

// The exact expectation of one single-sample CD-k iteration's change with lr = 1 (W, b, a
// flattened as cd_gradient_stats does), in double: the image x0 is uniform over the data, the law
// of x_k is the exact k-step Gibbs kernel from x0 (test::exact_law_after), and
//   E[g] = mean_r [ x_r m(x_r)' - sum_x P(x_k = x | x_0 = x_r) x m(x)' ]   (W; b and a alike),
// with m(x) = E[h | x] = sigm(W'x + b), or G(W'x + b) = 2 sinh / (1 + 2 cosh) for ternary units.
std::vector<double> exact_cd_expectation(const Params& p, const Dataset& data, int k) {
  const int d = p.visible, H = p.hidden;
  const size_t nx = size_t{1} << d;
  const auto mean_hidden = [&](size_t x) {  // (H) m(x)
    std::vector<double> m(static_cast<size_t>(H));
    for (int j = 0; j < H; ++j) {
      double t = p.b[j];
      for (int i = 0; i < d; ++i)
        t += ((x >> i) & 1) ? double{p.W[static_cast<size_t>(i) * H + j]} : 0.0;
      m[j] = p.hidden_type == HiddenType::ternary ? 2.0 * std::sinh(t) / (1.0 + 2.0 * std::cosh(t))
                                                  : 1.0 / (1.0 + std::exp(-t));
    }
    return m;
  };
  const size_t n_a = p.has_visible_bias() ? static_cast<size_t>(d) : 0;
  std::vector<double> expectation(static_cast<size_t>(d) * H + H + n_a, 0.0);
  // Adds weight * (x m', m, x) to the expectation.
  const auto add = [&](size_t x, double weight) {
    const std::vector<double> m = mean_hidden(x);
    for (int i = 0; i < d; ++i) {
      if (!((x >> i) & 1)) continue;
      for (int j = 0; j < H; ++j) expectation[static_cast<size_t>(i) * H + j] += weight * m[j];
      if (n_a > 0) expectation[static_cast<size_t>(d) * H + H + i] += weight;
    }
    for (int j = 0; j < H; ++j) expectation[static_cast<size_t>(d) * H + j] += weight * m[j];
  };
  const double per_image = 1.0 / static_cast<double>(data.rows);
  for (int64_t r = 0; r < data.rows; ++r) {
    size_t x0 = 0;
    for (int i = 0; i < d; ++i) x0 |= size_t{data.row(r)[i]} << i;
    std::vector<double> start(nx, 0.0);
    start[x0] = 1.0;
    const std::vector<double> law = test::exact_law_after(p, k, start);
    add(x0, per_image);
    for (size_t x = 0; x < nx; ++x) add(x, -per_image * law[x]);
  }
  return expectation;
}

// CD-1 and CD-30: the mean over 200000 iterations of each parameter's change against its exact
// expectation. Tolerance per parameter, z se + rounding + draw bias:
//  - z = 6 standard errors (se = sample sd / sqrt(n)): a two-sided normal tail of 2e-9 per check;
//    34 parameters x 2 values of k x 2 hidden types = 136 checks: < 2.7e-7 in all;
//  - rounding of the float change W + g - W: u (|p| + 2) (|g| <= 2), u = 2^-24, and g's own float
//    error, 2 terms each within (2/3) (d + 2) u S + 8u (pre-activation W'x + b of <= d + 1 terms of
//    total size <= S = max_j |b_j| + sum_i |W_ij|, the mean's slope <= 2/3, 8u for sigm or G);
//  - the float chain's draws: each of the k (H + d) probabilities errs by at most
//    delta = (1/2) (max(d, H) + 2) u S' + 8u + 2^-24 (a pre-activation's sum, S' the larger of S
//    and max_i |a_i| + sum_j |W_ij|; slope <= 1/2 for either unit's cumulative probabilities; the
//    probability's own rounding; the uniform's float grid), so the law of x_k is within
//    k (H + d) delta of the exact one in total variation, and E[g] within 2 max |g| = 4 times that.
// At k = 30 the draw-bias bound (2.3e-3) is a quarter of 6 se (up to 9.4e-3); the exact
// expectation replaces the old allowance for "CD-30's remaining bias", and CD-1 is held to its own
// expectation, not only shown to differ from the exact gradient.
void expect_cd_matches_its_exact_expectation(HiddenType type) {
  Params start = test::random_params(6, 4, 0.7f, 31, /*visible_bias=*/true);
  start.hidden_type = type;
  const Dataset data = test::bit_images(6, {0b000111, 0b111000, 0b101010, 0b110011, 0b001100});
  const int d = start.visible, H = start.hidden;
  const double u = FLT_EPSILON / 2.0;
  double s_hidden = 0.0, s_visible = 0.0;  // S and S' above
  for (int j = 0; j < H; ++j) {
    double s = std::fabs(start.b[j]);
    for (int i = 0; i < d; ++i) s += std::fabs(start.W[static_cast<size_t>(i) * H + j]);
    s_hidden = std::max(s_hidden, s);
  }
  for (int i = 0; i < d; ++i) {
    double s = std::fabs(start.a[i]);
    for (int j = 0; j < H; ++j) s += std::fabs(start.W[static_cast<size_t>(i) * H + j]);
    s_visible = std::max(s_visible, s);
  }
  const double delta = 0.5 * (std::max(d, H) + 2) * u * std::max(s_hidden, s_visible) + 8.0 * u +
                       std::ldexp(1.0, -24);
  const std::vector<float> flat_start = [&] {
    std::vector<float> v = start.W;
    v.insert(v.end(), start.b.begin(), start.b.end());
    v.insert(v.end(), start.a.begin(), start.a.end());
    return v;
  }();

  const Params exact = exact_gradient(start, data);
  std::vector<double> gradient(exact.W.begin(), exact.W.end());
  gradient.insert(gradient.end(), exact.b.begin(), exact.b.end());
  gradient.insert(gradient.end(), exact.a.begin(), exact.a.end());

  constexpr int64_t kIterations = 200000;
  constexpr double kZ = 6.0;
  const std::vector<double> cd1_expectation = exact_cd_expectation(start, data, 1);
  double cd1_gap = 0.0;       // max over parameters of |E[CD-1] - E[CD-30]| / CD-30's tolerance
  double gradient_gap = 0.0;  // max over parameters of |E[CD-30] - gradient| / the same
  for (const int k : {1, 30}) {
    SCOPED_TRACE("CD-" + std::to_string(k));
    const std::vector<double> want =
        k == 1 ? cd1_expectation : exact_cd_expectation(start, data, k);
    const GradientStats cd = cd_gradient_stats(start, data, k, kIterations);
    ASSERT_EQ(cd.mean.size(), want.size());
    const double draw_bias = 4.0 * k * (H + d) * delta;
    double noise = 0.0;  // the largest z se
    for (size_t q = 0; q < want.size(); ++q) {
      const double rounding = u * (std::fabs(flat_start[q]) + 2.0) +
                              2.0 * (2.0 / 3.0 * (d + 2) * u * s_hidden + 8.0 * u);
      const double tolerance =
          kZ * cd.sd[q] / std::sqrt(double{kIterations}) + rounding + draw_bias;
      noise = std::max(noise, kZ * cd.sd[q] / std::sqrt(double{kIterations}));
      EXPECT_NEAR(cd.mean[q], want[q], tolerance) << "parameter " << q;
      if (k == 30) {
        cd1_gap = std::max(cd1_gap, std::fabs(cd1_expectation[q] - want[q]) / tolerance);
        gradient_gap = std::max(gradient_gap, std::fabs(want[q] - gradient[q]) / tolerance);
      }
    }
    std::printf("CD-%d: z se up to %.2g, draw bias bound %.2g\n", k, noise, draw_bias);
  }
  std::printf("|E[CD-1] - E[CD-30]| up to %.3g tolerances, |E[CD-30] - gradient| up to %.3g\n",
              cd1_gap, gradient_gap);
  // CD-30's expectation is the exact gradient to far within its tolerance on this fast-mixing
  // model (computed, where the old check allowed 1e-4 for it), and CD-1's lies more than 2
  // tolerances from it somewhere (measured: 2.5 binary, 10.6 ternary): a trainer that ran one
  // step when asked for 30 would miss that check by a tolerance even with its noise at z se.
  EXPECT_LT(gradient_gap, 0.01);
  EXPECT_GT(cd1_gap, 2.0);
}

TEST(Gradient, CdMatchesItsExactExpectation) {
  expect_cd_matches_its_exact_expectation(HiddenType::binary);
}
// Ternary hidden units: CD with ternary draws and G(t) (the finite-difference check of the exact
// gradient with G(t) is in tests/test_ternary.cpp).
TEST(Gradient, CdMatchesItsExactExpectationForTernaryHiddenUnits) {
  expect_cd_matches_its_exact_expectation(HiddenType::ternary);
}

}  // namespace
}  // namespace rbm
