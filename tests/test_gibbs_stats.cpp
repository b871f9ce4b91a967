// The Gibbs sampler's long-run distribution on tiny RBMs against the exact p(x) by enumeration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "kernels/philox.h"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

constexpr int64_t kChains = 1 << 18;
// With W ~ N(0, 0.7^2) on d = 6, H = 4 the chain mixes within a few steps: after 40 the law of
// each chain is within kMaxBurnInDistance of p(x) in total variation, computed exactly by
// test::exact_law_after and asserted before any chain runs. Then the N independent chains' joint
// law is within N kMaxBurnInDistance = 2.6e-8 of N independent draws from p(x), so the burn-in
// adds at most that to the chi-square test's failure probability (1e-6).
constexpr int kBurnIn = 40;
constexpr double kMaxBurnInDistance = 1e-13;

// Asserts that kBurnIn steps from Bernoulli(1/2) bring the chain's law to within
// kMaxBurnInDistance of p(x) (visible_distribution) in total variation.
void expect_burn_in_reaches_stationarity(const Params& params) {
  const std::vector<double> law = test::exact_law_after(params, kBurnIn);
  const std::vector<double> stationary = visible_distribution(params);
  ASSERT_EQ(law.size(), stationary.size());
  double tv = 0.0;
  for (size_t x = 0; x < law.size(); ++x) tv += 0.5 * std::fabs(law[x] - stationary[x]);
  ASSERT_LT(tv, kMaxBurnInDistance) << "the burn-in is too short for this model";
}

// Final states (n_chains, d) of independent chains started from Bernoulli(1/2).
std::vector<uint8_t> run_chains(Backend& backend, const Params& params, uint32_t seed) {
  const int d = params.visible;
  std::vector<uint8_t> states = random_initial_states(kChains, d, seed);
  backend.set_params(params);
  backend.gibbs(states, kChains, seed, 0, kBurnIn);
  return states;
}

// Pearson's chi-square of the states' histogram over all 2^d states against p.
double chi_square(const std::vector<uint8_t>& states, int d, const std::vector<double>& p) {
  const int64_t n = static_cast<int64_t>(states.size()) / d;
  std::vector<int64_t> counts(p.size(), 0);
  for (int64_t c = 0; c < n; ++c) {
    size_t index = 0;
    for (int i = 0; i < d; ++i) index |= size_t{states[static_cast<size_t>(c) * d + i]} << i;
    ++counts[index];
  }
  double statistic = 0.0;
  for (size_t s = 0; s < p.size(); ++s) {
    const double expected = p[s] * static_cast<double>(n);
    EXPECT_GE(expected, 5.0) << "too few chains for the chi-square approximation";
    const double diff = static_cast<double>(counts[s]) - expected;
    statistic += diff * diff / expected;
  }
  return statistic;
}

TEST(GibbsStats, TinyRbmMatchesEnumeration) {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  for (bool visible_bias : {true, false}) {
    const Params params = test::random_params(6, 4, 0.7f, visible_bias ? 5 : 6, visible_bias);
    ASSERT_NO_FATAL_FAILURE(expect_burn_in_reaches_stationarity(params))
        << "visible bias " << visible_bias;
    const std::vector<uint8_t> states = run_chains(*backend, params, 77);
    // 63 degrees of freedom; a correct sampler exceeds the limit with probability < 1e-6.
    EXPECT_LT(chi_square(states, 6, visible_distribution(params)), test::chi_square_limit_1e6(63))
        << "visible bias " << visible_bias;
  }
}

TEST(GibbsStats, ChiSquareDetectsAWrongModel) {
  // The statistic must reject samples of a different model, or the test above proves nothing:
  // chains run under W, scored against 1.5 W.
  std::unique_ptr<Backend> backend = make_cpu_backend();
  const Params params = test::random_params(6, 4, 0.7f, 5, true);
  Params other = params;
  for (float& w : other.W) w *= 1.5f;
  const std::vector<uint8_t> states = run_chains(*backend, params, 78);
  EXPECT_GT(chi_square(states, 6, visible_distribution(other)), test::chi_square_limit_1e6(63));
}

}  // namespace
}  // namespace rbm
