// CD-k's mean gradient on a tiny RBM approaches the exact log-likelihood gradient (enumeration)
// as k grows: design.md's estimator, and a check that nothing in the chain is biased.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
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

void expect_large_k_cd_approaches_the_exact_gradient(HiddenType type) {
  Params start = test::random_params(6, 4, 0.7f, 31, /*visible_bias=*/true);
  start.hidden_type = type;
  const Dataset data = test::bit_images(6, {0b000111, 0b111000, 0b101010, 0b110011, 0b001100});
  const Params exact = exact_gradient(start, data);
  std::vector<double> want(exact.W.begin(), exact.W.end());
  want.insert(want.end(), exact.b.begin(), exact.b.end());
  want.insert(want.end(), exact.a.begin(), exact.a.end());

  constexpr int64_t kIterations = 200000;
  const GradientStats cd30 = cd_gradient_stats(start, data, 30, kIterations);
  ASSERT_EQ(cd30.mean.size(), want.size());
  // Each mean is within 6 standard errors (two-sided normal tail 2e-9; 34 parameters: < 1e-7),
  // plus 1e-4 for the float rounding of W + g - W and CD-30's remaining bias on this
  // fast-mixing model.
  for (size_t q = 0; q < want.size(); ++q) {
    const double tolerance = 6.0 * cd30.sd[q] / std::sqrt(double{kIterations}) + 1e-4;
    EXPECT_NEAR(cd30.mean[q], want[q], tolerance) << "parameter " << q;
  }

  // CD-1 is biased on this model: its mean must differ from the exact gradient somewhere by far
  // more than its standard error, or the test above could not tell a short chain from a long one.
  const GradientStats cd1 = cd_gradient_stats(start, data, 1, kIterations);
  double largest_z = 0.0;
  for (size_t q = 0; q < want.size(); ++q) {
    const double se = cd1.sd[q] / std::sqrt(double{kIterations}) + 1e-12;
    largest_z = std::max(largest_z, std::fabs(cd1.mean[q] - want[q]) / se);
  }
  EXPECT_GT(largest_z, 10.0);
}

TEST(Gradient, LargeKCdApproachesTheExactGradient) {
  expect_large_k_cd_approaches_the_exact_gradient(HiddenType::binary);
}
// Ternary hidden units: CD with ternary draws and G(t) against the exact gradient with G(t) (the
// finite-difference check of that exact gradient is in tests/test_ternary.cpp).
TEST(Gradient, LargeKCdApproachesTheExactGradientForTernaryHiddenUnits) {
  expect_large_k_cd_approaches_the_exact_gradient(HiddenType::ternary);
}

}  // namespace
}  // namespace rbm
