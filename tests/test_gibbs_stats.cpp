// The Gibbs sampler's long-run distribution on tiny RBMs against the exact p(x) by enumeration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "kernels/philox.h"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

constexpr int64_t kChains = 1 << 18;
// With W ~ N(0, 0.7^2) on d = 6, H = 4 the chain mixes within a few steps: after burn_in() steps
// (40 with binary hidden units; ternary ones, which mix more slowly, 60) the law of each chain is
// within kMaxBurnInDistance of p(x) in total variation, computed exactly by test::exact_law_after
// and asserted before any chain runs. Then the N independent chains' joint law is within
// N kMaxBurnInDistance = 2.6e-8 of N independent draws from p(x), so the burn-in adds at most that
// to the chi-square test's failure probability.
int burn_in(const Params& params) { return params.hidden_type == HiddenType::ternary ? 60 : 40; }
constexpr double kMaxBurnInDistance = 1e-13;

// Asserts that burn_in() steps from Bernoulli(1/2) bring the chain's law to within
// kMaxBurnInDistance of p(x) (visible_distribution) in total variation.
void expect_burn_in_reaches_stationarity(const Params& params) {
  const std::vector<double> law = test::exact_law_after(params, burn_in(params));
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
  backend.gibbs(states, kChains, seed, 0, burn_in(params));
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

// Four models (binary and ternary hidden units, each with and without visible biases), each
// tested at the chi-square quantile for an upper tail of 2e-7 (z = 5.069; the limit, 144.5 at 63
// degrees of freedom, has an exact tail of 2.4e-8 by the incomplete gamma function), plus the
// burn-in's 2.6e-8 each: a correct sampler fails the suite with probability < 4 x 2.3e-7 < 1e-6.
constexpr double kChiSquareZ = 5.069;

// The four models; a ternary one sums 3^4 = 81 hidden states in the enumeration (d = 6, H = 4).
std::vector<Params> tiny_models() {
  std::vector<Params> models;
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const bool visible_bias : {true, false}) {
      Params p = test::random_params(6, 4, 0.7f, visible_bias ? 5 : 6, visible_bias);
      p.hidden_type = type;
      models.push_back(p);
    }
  }
  return models;
}

std::string describe(const Params& p) {
  return std::string(p.hidden_type == HiddenType::ternary ? "ternary" : "binary") +
         (p.has_visible_bias() ? ", visible bias" : ", no visible bias");
}

// The joint law of the 6 pixels, not only each pixel's marginal: a sampler that drew the right
// marginals from a wrong joint (e.g. ternary hidden draws with the right means and the wrong
// probabilities) fails here.
TEST(GibbsStats, TinyRbmMatchesEnumeration) {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  for (const Params& params : tiny_models()) {
    SCOPED_TRACE(describe(params));
    ASSERT_NO_FATAL_FAILURE(expect_burn_in_reaches_stationarity(params));
    const std::vector<uint8_t> states = run_chains(*backend, params, 77);
    EXPECT_LT(chi_square(states, 6, visible_distribution(params)),
              test::chi_square_limit(63, kChiSquareZ));
  }
}

TEST(GibbsStats, ChiSquareDetectsAWrongModel) {
  // The statistic must reject samples of a different model, or the test above proves nothing:
  // chains run under W, scored against 1.5 W; and ternary chains scored as the binary model.
  std::unique_ptr<Backend> backend = make_cpu_backend();
  for (const Params& params : tiny_models()) {
    SCOPED_TRACE(describe(params));
    Params other = params;
    for (float& w : other.W) w *= 1.5f;
    const std::vector<uint8_t> states = run_chains(*backend, params, 78);
    EXPECT_GT(chi_square(states, 6, visible_distribution(other)),
              test::chi_square_limit(63, kChiSquareZ));
    Params other_type = params;
    other_type.hidden_type =
        params.hidden_type == HiddenType::ternary ? HiddenType::binary : HiddenType::ternary;
    EXPECT_GT(chi_square(states, 6, visible_distribution(other_type)),
              test::chi_square_limit(63, kChiSquareZ));
  }
}

}  // namespace
}  // namespace rbm
