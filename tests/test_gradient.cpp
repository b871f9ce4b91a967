// CD-k's mean gradient on a tiny RBM approaches the exact log-likelihood gradient (enumeration)
// as k grows: design.md's estimator, and a check that nothing in the chain is biased.
#include <gtest/gtest.h>

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
