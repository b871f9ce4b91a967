// Annealed importance sampling (host/ais.hpp, host/log_z.hpp) on the CPU: the schedule, the
// summary, the naming of the draws, unbiasedness on a tiny model, and the estimate against exact
// log Z on random and trained models over the 784 MNIST pixels with H in 10..20.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/hidden_units.hpp"
#include "host/log_z.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"
#include "tests/forwarding_backend.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

TEST(AisSchedule, PaperSpacingFor14500) {
  const std::vector<double> betas = ais_betas(14500);
  ASSERT_EQ(betas.size(), 14501u);
  EXPECT_EQ(betas.front(), 0.0);
  EXPECT_EQ(betas.back(), 1.0);
  EXPECT_DOUBLE_EQ(betas[500], 0.5);
  EXPECT_DOUBLE_EQ(betas[4500], 0.9);
  // Steps of 1e-3 in [0, 0.5), 1e-4 in [0.5, 0.9), 1e-5 in [0.9, 1].
  for (size_t k = 1; k < betas.size(); ++k) {
    const double step = k <= 500 ? 1e-3 : (k <= 4500 ? 1e-4 : 1e-5);
    ASSERT_NEAR(betas[k] - betas[k - 1], step, 1e-12) << "k = " << k;
  }
}

TEST(AisSchedule, ScalesForOtherCounts) {
  // 1450 steps: 50 + 400 + 1000; 100: round(100/29) = 3, round(800/29) = 28, and 69.
  const std::vector<double> betas = ais_betas(1450);
  ASSERT_EQ(betas.size(), 1451u);
  EXPECT_DOUBLE_EQ(betas[50], 0.5);
  EXPECT_DOUBLE_EQ(betas[450], 0.9);
  const std::vector<double> short_betas = ais_betas(100);
  ASSERT_EQ(short_betas.size(), 101u);
  EXPECT_DOUBLE_EQ(short_betas[3], 0.5);
  EXPECT_DOUBLE_EQ(short_betas[31], 0.9);
  for (const int64_t n : {3, 4, 7, 29, 1000, 14501}) {
    const std::vector<double> b = ais_betas(n);
    ASSERT_EQ(b.size(), static_cast<size_t>(n + 1)) << n;
    EXPECT_EQ(b.front(), 0.0);
    EXPECT_EQ(b.back(), 1.0);
    for (size_t k = 1; k < b.size(); ++k) ASSERT_GT(b[k], b[k - 1]) << n << " at " << k;
  }
  EXPECT_THROW(ais_betas(2), InputError);
}

TEST(AisSummary, MatchesHandComputation) {
  // w = 1, 3 (times e^2 for the base): mean 2, sd sqrt(2), half-width 3 sqrt(2) / sqrt(2) = 3.
  AisResult result;
  result.log_z_base = 2.0;
  result.log_weights = {0.0, std::log(3.0)};
  const AisSummary s = summarize_ais(result);
  EXPECT_NEAR(s.log_z, 2.0 + std::log(2.0), 1e-12);
  EXPECT_NEAR(s.log_z_high, 2.0 + std::log(5.0), 1e-12);
  EXPECT_EQ(s.log_z_low, -INFINITY);  // mean - 3 se < 0
  EXPECT_NEAR(s.ess, 16.0 / 10.0, 1e-12);
  // Large log weights do not overflow: the same weights times e^1000.
  result.log_weights = {1000.0, 1000.0 + std::log(3.0)};
  EXPECT_NEAR(summarize_ais(result).log_z, 1002.0 + std::log(2.0), 1e-9);
}

TEST(AisBaseRates, SmoothedPixelLogOdds) {
  const Dataset data = test::bit_images(3, {0b001, 0b011, 0b001, 0b000});  // counts 3, 1, 0 of 4
  const std::vector<float> c = base_rate_biases(data);
  ASSERT_EQ(c.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const double p = (std::vector<double>{3, 1, 0}[i] + 0.05) / 4.1;
    EXPECT_NEAR(c[i], std::log(p / (1 - p)), 1e-6) << i;
  }
}

TEST(AisLowerBound, BelowExactAndEqualForOneHiddenUnit) {
  for (const bool visible_bias : {false, true}) {
    const Params p = test::random_params(9, 6, 1.0f, 31, visible_bias);
    EXPECT_LE(log_partition_lower_bound(p), exact_log_partition(p));
    // H = 1: {0, e_1} is every hidden state.
    const Params one = test::random_params(9, 1, 1.0f, 32, visible_bias);
    EXPECT_NEAR(log_partition_lower_bound(one), exact_log_partition(one), 1e-12);
  }
  // Without visible biases the h = 0 term alone is d log 2.
  Params zero = test::random_params(20, 3, 1.0f, 33, false);
  for (float& w : zero.W) w = 0.0f;
  for (float& b : zero.b) b = -50.0f;
  EXPECT_NEAR(log_partition_lower_bound(zero), 20 * std::numbers::ln2, 1e-12);
}

// Ternary units add the terms h = -e_j; with H = 1, {0, e_1, -e_1} is every hidden state.
TEST(AisLowerBound, TernaryBelowExactAndEqualForOneHiddenUnit) {
  for (const bool visible_bias : {false, true}) {
    Params p = test::random_params(9, 6, 1.0f, 34, visible_bias);
    p.hidden_type = HiddenType::ternary;
    EXPECT_LE(log_partition_lower_bound(p), exact_log_partition(p));
    Params one = test::random_params(9, 1, 1.0f, 35, visible_bias);
    one.hidden_type = HiddenType::ternary;
    EXPECT_NEAR(log_partition_lower_bound(one), exact_log_partition(one), 1e-12);
  }
}

// One AIS step (betas {0, 1}) by hand: x_1 from phase 0 of each run's stream, then
// log w = (a - c)'x + sum_j softplus(u_j) - softplus(0) with u = W'x + b (log(1 + 2 cosh) for
// softplus with ternary units, whose base has 3^H for 2^H).
void expect_draws_named_by_run_stream_and_phase(HiddenType type) {
  Params p = test::random_params(10, 4, 0.7f, 41, true);
  p.hidden_type = type;
  const auto unit_term = [type](double t) {
    return with_hidden_type(type,
                            [t](auto tag) { return hidden_log_sum<decltype(tag)::value>(t); });
  };
  AisRequest request;
  request.base_bias = {-1, 0.5, 2, -3, 0, 1, -0.5, 0.25, 3, -2};
  request.betas = {0.0, 1.0};
  request.runs = 6;
  request.seed = 77;
  request.first_stream = 5;
  const AisResult result = ais_cpu(p, request);
  ASSERT_EQ(result.log_weights.size(), 6u);
  const uint64_t key = philox_key(77, Purpose::ais);
  for (int r = 0; r < 6; ++r) {
    std::vector<uint8_t> x(10);
    double visible = 0.0;
    for (int i = 0; i < 10; ++i) {
      const float u = philox_uniform(key, 5 + r, ais_init_phase(), i);
      x[i] = static_cast<uint8_t>(u < sigmoid(request.base_bias[i]));
      visible += x[i] ? static_cast<double>(p.a[i]) - request.base_bias[i] : 0.0;
    }
    double want = visible, bound = 1e-12;  // 1e-12: double roundings of terms below ~10
    for (int j = 0; j < 4; ++j) {
      double t = p.b[j], size = std::fabs(p.b[j]);
      for (int i = 0; i < 10; ++i) t += x[i] ? p.W[i * 4 + j] : 0.0f;
      for (int i = 0; i < 10; ++i) size += x[i] ? std::fabs(p.W[i * 4 + j]) : 0.0f;
      want += unit_term(t) - unit_term(0.0);
      // ais_cpu sums u_j = W'x + b in float, <= 11 terms: worst case 11 x 2^-24 x their sizes; the
      // unit's term has slope sigm(t) or |G(t)| <= 1.
      bound += 11.0 * std::ldexp(1.0, -24) * size;
    }
    EXPECT_NEAR(result.log_weights[r], want, bound) << "run " << r;
  }
  double log_z_base = 4 * (type == HiddenType::ternary ? std::log(3.0) : std::numbers::ln2);
  for (const float c : request.base_bias) log_z_base += softplus(c);
  EXPECT_NEAR(result.log_z_base, log_z_base, 1e-12);

  // Run r of a longer request is the same run whatever the others: stream first_stream + r.
  request.betas = ais_betas(40);
  request.first_stream = 0;
  request.runs = 9;
  const AisResult all = ais_cpu(p, request);
  request.first_stream = 4;
  request.runs = 3;
  const AisResult part = ais_cpu(p, request);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(part.log_weights[r], all.log_weights[4 + r]) << r;
}

TEST(AisCpu, DrawsAreNamedByRunStreamAndPhase) {
  expect_draws_named_by_run_stream_and_phase(HiddenType::binary);
}
TEST(AisCpu, TernaryDrawsAreNamedByRunStreamAndPhase) {
  expect_draws_named_by_run_stream_and_phase(HiddenType::ternary);
}

// The progress count (AisRequest::steps_done) ends at runs x K, added to what it held, and
// counting changes no weight.
TEST(AisCpu, CountsEveryRunsTemperatureSteps) {
  const Params p = test::random_params(20, 6, 0.5f, 31, true);
  AisRequest request;
  request.base_bias.assign(20, 0.1f);
  request.betas = ais_betas(50);
  request.runs = 7;
  const AisResult uncounted = ais_cpu(p, request);
  std::atomic<int64_t> steps{1000};
  request.steps_done = &steps;
  const AisResult counted = ais_cpu(p, request);
  EXPECT_EQ(steps.load(), 1000 + 7 * 50);
  EXPECT_EQ(counted.log_weights, uncounted.log_weights);
}

// AIS is unbiased for any schedule: E[w] = Z / Z_0, even with three steps. On a model small enough
// that Z is exact, the mean of 2^17 weights is within 6 of its standard errors of Z / Z_0. Under
// the central limit theorem (2^17 independent runs of a bounded-variance weight: on this model
// the weights are ratios of finite products, w <= max over x of p_k*/p_{k-1}*) a correct
// implementation fails with probability 2e-9. A wrong increment (say softplus(beta u) without the
// previous temperature's term) moves the mean by far more than 6 standard errors.
// Ternary hidden units (the ternary transition and increments) likewise; four checks in all, so a
// correct implementation fails with probability < 1e-8.
TEST(AisCpu, UnbiasedOnATinyModel) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const bool visible_bias : {false, true}) {
      SCOPED_TRACE(std::string(hidden_type_name(type)) +
                   (visible_bias ? ", visible bias" : ", no visible bias"));
      Params p = test::random_params(6, 4, 1.0f, 51, visible_bias);
      p.hidden_type = type;
      AisRequest request;
      request.base_bias = {0.3f, -0.4f, 1.0f, 0.0f, -1.2f, 0.6f};
      request.betas = {0.0, 0.3, 0.7, 1.0};
      request.runs = int64_t{1} << 17;
      request.seed = 52;
      const AisResult result = ais_cpu(p, request);
      double sum = 0.0, sum_sq = 0.0;
      for (const double lw : result.log_weights) {
        sum += std::exp(lw);
        sum_sq += std::exp(2 * lw);
      }
      const double m = static_cast<double>(request.runs), mean = sum / m;
      const double se = std::sqrt((sum_sq / m - mean * mean) / m);
      const double want = std::exp(exact_log_partition(p) - result.log_z_base);
      EXPECT_NEAR(mean, want, 6 * se) << "standard error " << se;
      EXPECT_GT(se, 0.0);
    }
  }
}

std::string mnist_dir() { return RBM_MNIST_DIR; }

// What the AIS tests compare: estimate_log_z with method ais (both bases, the larger estimate)
// against exact log Z. The check is on the chosen base's own estimate, before estimate_log_z
// raises it to the exact lower bound: on the trained models without visible biases that bound is
// exact log Z itself (their mass sits at h = 0), and the raised value could not err low.
//
// The bounds, and the chance that a correct AIS breaks them:
// - Above: each base's Zhat is nonnegative with E[Zhat] = Z, so P(log Zhat >= log Z + t) <= e^-t
//   (Markov), and <= 2 e^-t for the larger of the two. With t = ln(4e6) = 15.2 nats a correct AIS
//   fails this side with probability <= 5e-7, for any model and schedule. Nothing tighter is safe:
//   a lucky weight lifts the larger estimate by nats now and then (measured below: up to +2.2
//   nats, in 1 of 30 seeds of three of the models). What this side catches is a gross error;
//   UnbiasedOnATinyModel above checks the weights' mean exactly.
// - Below: no bound holds for every model (AIS's failure is a mode no run visits, and these
//   models have none missed by both bases). For a mean of M nonnegative weights the lower tail is
//   sub-Gaussian (Maurer 2003): P(Zhat <= (1 - s) Z) <= exp(-M s^2 / (2 (1 + cv^2))), cv the
//   weights' coefficient of variation; the larger of two bases errs low only when both do. At
//   2 nats (s = 1 - e^-2 = 0.865) and M = 100 that is <= 5e-7 when one base has cv^2 <= 1.58,
//   i.e. an effective sample size of 39 of the 100 runs or more. The better base of each model
//   here has an ESS of 70 to 99 at this seed (printed), and of at least 42 over 30 other seeds
//   (5000 to 5029, 27 of them for the trained ternary model; the 8 models of these tests and
//   EvalCli's: 42.6 for trained H = 16 with
//   visible biases, 60 to 99 for the rest), whose raw errors lay from -0.15 to +2.2 nats. A missed
//   mode costs far more than 2 nats: the base-rate base misses the noise mode of the trained models
//   without visible biases by 4 to 43 nats.
// Each test thus fails with probability below 1e-6 (5e-7 a side); the ESS is printed, not
// checked (it varies too much from seed to seed to be a bound: 22 of 30 seeds of the ternary
// model fell below the 66 that this test once required).
constexpr double kAisAbove = 15.2;  // ln(4e6)
constexpr double kAisBelow = 2.0;

// The chosen base's own estimate: the larger of the two bases' (before any raising to the bound).
double chosen_raw_log_z(const LogZEstimate& estimate) {
  double log_z = -INFINITY;
  for (const AisBaseReport& base : estimate.bases) log_z = std::max(log_z, base.summary.log_z);
  return log_z;
}

void expect_ais_near_exact(const Params& params, const std::vector<float>& base_rate,
                           int64_t n_betas, const std::string& what) {
  SCOPED_TRACE(what);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(params);
  LogZOptions options;
  options.method = LogZMethod::ais;
  options.ais_runs = 100;
  options.ais_betas = n_betas;
  options.seed = 2024;
  options.base_rate = base_rate;
  const LogZEstimate estimate = estimate_log_z(*backend, params, options);
  const double exact = exact_log_partition(params);
  ASSERT_EQ(estimate.bases.size(), 2u);
  const double raw = chosen_raw_log_z(estimate);
  std::printf(
      "%-32s %5lld steps: exact %9.4f  AIS %9.4f (%s; base-rate %9.4f ESS %5.1f, uniform %9.4f "
      "ESS %5.1f)  err %+.4f\n",
      what.c_str(), static_cast<long long>(n_betas), exact, raw, estimate.chosen_base.c_str(),
      estimate.bases[0].summary.log_z, estimate.bases[0].summary.ess,
      estimate.bases[1].summary.log_z, estimate.bases[1].summary.ess, raw - exact);
  EXPECT_EQ(estimate.method, "ais");
  EXPECT_LE(raw - exact, kAisAbove);
  EXPECT_GE(raw - exact, -kAisBelow);
  // What eval reports: the chosen estimate raised to the exact lower bound, in its interval.
  EXPECT_EQ(estimate.log_z, std::max(raw, estimate.lower_bound));
  EXPECT_LE(estimate.log_z_low, estimate.log_z);
  EXPECT_GE(estimate.log_z_high, estimate.log_z);
  EXPECT_LE(estimate.lower_bound, exact + 1e-9);
}

// 784-pixel models: a random W at the reference recipe's initial scale (no visible bias; its Z is
// mostly the noise mode at h = 0, found from the uniform base), and a stronger one with visible
// biases (found from the base rates). One test per model keeps each well inside ctest's limit.
TEST(AisCpu, NearExactOnRandomModelWithoutVisibleBias) {
  const std::vector<float> base_rate = base_rate_biases(load_mnist(mnist_dir(), 3, Split::train));
  Params weak = test::random_params(784, 20, 0.1f, 61, false);
  for (float& b : weak.b) b = 0.0f;
  expect_ais_near_exact(weak, base_rate, 1000, "random H=20, W~N(0,0.1^2)");
}

TEST(AisCpu, NearExactOnRandomModelWithVisibleBias) {
  const std::vector<float> base_rate = base_rate_biases(load_mnist(mnist_dir(), 3, Split::train));
  Params strong = test::random_params(784, 16, 0.2f, 62, true);
  for (float& a : strong.a) a = a * 3.0f - 1.0f;  // a ~ N(-1, 0.6^2)
  expect_ais_near_exact(strong, base_rate, 10000, "random H=16, W~N(0,0.2^2), a");
}

// Trained on MNIST threes with the CPU backend (single-sample CD-3, 10000 iterations): without
// visible biases (the reference recipe's kind of model, whose mass sits in the noise mode at
// h = 0: AIS from the base rates alone misses it by 20 to 40 nats here) and with them.
void expect_ais_near_exact_after_training(int H, bool visible_bias, int64_t n_betas,
                                          HiddenType type = HiddenType::binary) {
  const Dataset train = load_mnist(mnist_dir(), 3, Split::train);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(train);
  Recipe recipe;
  recipe.hidden = H;
  recipe.iters = 10000;
  recipe.lr = 0.01f;
  recipe.visible_bias = visible_bias;
  recipe.hidden_type = type;
  recipe.seed = static_cast<uint32_t>(H);
  backend->set_params(init_params(recipe, train));
  backend->train_cd(recipe, 0, recipe.iters);
  expect_ais_near_exact(backend->get_params(), base_rate_biases(train), n_betas,
                        std::string("trained ") + hidden_type_name(type) +
                            " H=" + std::to_string(H) + (visible_bias ? ", a" : ", no a"));
}

TEST(AisCpu, NearExactOnTrainedModelH10WithoutVisibleBias) {
  expect_ais_near_exact_after_training(10, false, 1000);
}
TEST(AisCpu, NearExactOnTrainedModelH20WithoutVisibleBias) {
  expect_ais_near_exact_after_training(20, false, 2000);
}
TEST(AisCpu, NearExactOnTrainedModelH12WithVisibleBias) {
  expect_ais_near_exact_after_training(12, true, 5000);
}
TEST(AisCpu, NearExactOnTrainedModelH16WithVisibleBias) {
  expect_ais_near_exact_after_training(16, true, 5000);
}

// Ternary hidden units (3^H hidden states, so H <= 15 for the exact value): the same check, with
// the ternary transition and increments, on a random model without visible biases and a trained
// one with them. (Trained without visible biases, a ternary model puts nearly all its mass on
// "anti-digit" images that drive W'x far below 0, where log(1 + 2 cosh) is as large as above it:
// log Z 1252 to 1828 for H = 8, against 543 for the noise mode. AIS from the uniform base finds
// that mode, within 0.1 nats of the exact log Z, but with ESS 35 of 100 at 5000 to 10000 steps,
// below the 39 that the lower side's argument needs.)
TEST(AisCpu, TernaryNearExactOnRandomModelWithoutVisibleBias) {
  const std::vector<float> base_rate = base_rate_biases(load_mnist(mnist_dir(), 3, Split::train));
  Params weak = test::random_params(784, 10, 0.1f, 63, false);
  weak.hidden_type = HiddenType::ternary;
  for (float& b : weak.b) b = 0.0f;
  expect_ais_near_exact(weak, base_rate, 1000, "ternary random H=10, W~N(0,0.1^2)");
}
TEST(AisCpu, TernaryNearExactOnTrainedModelH12WithVisibleBias) {
  expect_ais_near_exact_after_training(12, true, 14500, HiddenType::ternary);
}

TEST(LogZ, AutomaticIsExactForSmallH) {
  const Params p = test::random_params(30, 8, 0.5f, 91, true);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  LogZOptions options;
  options.base_rate.assign(30, 0.0f);
  const LogZEstimate estimate = estimate_log_z(*backend, p, options);
  EXPECT_EQ(estimate.method, "exact");
  EXPECT_EQ(estimate.log_z, exact_log_partition(p));
  EXPECT_EQ(estimate.log_z_low, estimate.log_z);
  EXPECT_EQ(estimate.log_z_high, estimate.log_z);
  EXPECT_FALSE(estimate.ess.has_value());
  EXPECT_TRUE(estimate.bases.empty());
  options.max_exact_hidden = 7;
  options.ais_betas = 50;
  options.ais_runs = 10;
  EXPECT_EQ(estimate_log_z(*backend, p, options).method, "ais");
}

// estimate_log_z with method ais on the CPU, the base-rate base at rate 1/2 (as the uniform one).
LogZEstimate ais_from_uniform_base_rates(const Params& p, int64_t betas, int64_t runs,
                                         uint32_t seed) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  LogZOptions options;
  options.method = LogZMethod::ais;
  options.base_rate.assign(static_cast<size_t>(p.visible), 0.0f);
  options.ais_betas = betas;
  options.ais_runs = runs;
  options.seed = seed;
  return estimate_log_z(*backend, p, options);
}

// Independent visible units with strong biases (W = 0, a ~ N(0, 2^2)), log Z = sum softplus(a_i)
// + H log 2 in closed form, and a schedule too short to get there: both AIS estimates and their
// intervals fall below the exact lower bound. The reported interval must still hold the truth:
// [bound, unknown], not a bound raised into the zero-width interval [bound, bound] that it once was
// (1.67 nats below the truth for this model).
TEST(LogZ, AisBelowTheExactBoundReportsOnlyTheBound) {
  Params p = test::random_params(784, 5, 0.0f, 93, true);
  std::fill(p.W.begin(), p.W.end(), 0.0f);
  std::fill(p.b.begin(), p.b.end(), 0.0f);
  std::mt19937_64 rng(94);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& a : p.a) a = normal(rng);
  double exact = 5.0 * std::numbers::ln2;
  for (const float a : p.a) exact += softplus(a);
  const LogZEstimate estimate = ais_from_uniform_base_rates(p, 200, 100, 1);
  ASSERT_TRUE(estimate.ais_below_bound) << "the case this test is for did not arise";
  EXPECT_EQ(estimate.log_z, estimate.lower_bound);
  EXPECT_EQ(estimate.log_z_low, estimate.lower_bound);
  EXPECT_EQ(estimate.log_z_high, INFINITY);
  EXPECT_LE(estimate.log_z_low, exact);
  EXPECT_LT(estimate.lower_bound, exact);
}

// An AIS that missed every mode (its weights all e^-1e6, as too few temperatures for a model of
// huge weights can give) of a model whose images outweigh the hidden states' bound: W = 1 on all
// 784 x 12 entries, so an image of n pixels has -F = 12 softplus(n) ~ 12 n, a 100-pixel image
// ~1200, above h = e_j's 784 softplus(1) = 1030. Without the scored images' bound, log Z was
// the hidden states' bound and the images' average log p(x) positive (an exploratory tester saw
// +4e31); with it (eval's LogZOptions::images_lower_bound), log Z is at least their mass and their
// average log p(x) at most 0.
class AisThatMissesEverything : public test::ForwardingCpuBackend {
 public:
  AisResult ais(const AisRequest& request) override {
    AisResult result = inner().ais(request);
    std::fill(result.log_weights.begin(), result.log_weights.end(), -1e6);
    return result;
  }
};
TEST(LogZ, TheScoredImagesBoundLogZWhereAisMissesEverything) {
  Params p = test::random_params(784, 12, 0.0f, 1, false);
  std::fill(p.W.begin(), p.W.end(), 1.0f);
  Dataset images = test::patterned_images(784, 50, 3);  // pixels 0..31 as bits of a hash
  for (int64_t r = 0; r < images.rows; ++r) {
    for (int i = 32; i < 132; ++i) images.pixels[r * 784 + i] = 1;  // and 100 more
  }
  AisThatMissesEverything backend;
  backend.set_params(p);
  LogZOptions options;
  options.method = LogZMethod::ais;
  options.ais_runs = 2;
  options.ais_betas = 3;
  options.base_rate.assign(784, 0.0f);
  const LogZEstimate without = estimate_log_z(backend, p, options);
  EXPECT_FALSE(without.lower_bound_from_images);
  const double mean_minus_f = -mean_free_energy(p, images);
  ASSERT_GT(mean_minus_f - without.log_z_low, 0.0) << "the case this test is for did not arise";

  options.images_lower_bound = images_log_z_lower_bound(p, images);
  const LogZEstimate with = estimate_log_z(backend, p, options);
  EXPECT_TRUE(with.lower_bound_from_images);
  EXPECT_EQ(with.lower_bound, *options.images_lower_bound);
  EXPECT_TRUE(with.ais_below_bound);
  EXPECT_EQ(with.log_z, with.lower_bound);
  EXPECT_EQ(with.log_z_low, with.lower_bound);
  EXPECT_LE(mean_minus_f - with.log_z_low, 0.0);  // the images' average log p(x), at most
  EXPECT_LT(with.lower_bound, exact_log_partition(p));
}

// A model whose mass is all at h = 0 (no visible biases, W = 0, b = -40: log Z exceeds the exact
// lower bound by about 1e-17 nats, and every AIS weight is the same): AIS gets log Z right to
// rounding, and its upper end may lie an ulp below the bound, which sums the same terms in another
// order. That is not a miss: no
// "below the bound" verdict, and an interval that holds the estimate. Whether rounding lands
// below differs from model to model, so several (seeds, sizes, schedules) are tried; on the
// trained H = 10 model of exploratory testing, 3 temperatures landed 6e-13 below.
TEST(LogZ, AisThatMeetsTheBoundUpToRoundingIsNotBelowIt) {
  int below_by_rounding = 0;
  for (uint32_t seed = 0; seed < 12; ++seed) {
    const int H = 4 + static_cast<int>(seed % 4) * 3;
    Params p = test::random_params(784, H, 0.0f, 200 + seed, false);
    std::fill(p.b.begin(), p.b.end(), -40.0f - static_cast<float>(seed));
    const LogZEstimate estimate = ais_from_uniform_base_rates(p, 3 + seed, 10, seed);
    SCOPED_TRACE("seed " + std::to_string(seed));
    double raw_high = -INFINITY;
    for (const AisBaseReport& base : estimate.bases) {
      if (base.name == estimate.chosen_base) raw_high = base.summary.log_z_high;
    }
    if (raw_high < estimate.lower_bound) ++below_by_rounding;
    EXPECT_NEAR(raw_high, estimate.lower_bound, 1e-9 * estimate.lower_bound);
    EXPECT_FALSE(estimate.ais_below_bound);
    EXPECT_LE(estimate.log_z_low, estimate.log_z);
    EXPECT_LE(estimate.log_z, estimate.log_z_high);
    EXPECT_TRUE(std::isfinite(estimate.log_z_high));
  }
  std::printf("%d of 12 upper ends below the bound by rounding\n", below_by_rounding);
  EXPECT_GT(below_by_rounding, 0) << "the case this test is for did not arise";
}

// Ternary: automatic enumerates the 3^H states up to the same work as 2^max_exact_hidden (H <= 15
// for 24, 12 for 20); method exact refuses H > 15 with a message that says why.
TEST(LogZ, TernaryExactWithinItsLimit) {
  EXPECT_EQ(max_exact_hidden(HiddenType::ternary, 24), 15);
  EXPECT_EQ(max_exact_hidden(HiddenType::ternary, 20), 12);
  EXPECT_EQ(max_exact_hidden(HiddenType::binary, 20), 20);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  LogZOptions options;
  options.base_rate.assign(20, 0.0f);
  options.max_exact_hidden = 20;
  options.ais_betas = 50;
  options.ais_runs = 10;
  for (const int H : {12, 13}) {
    Params p = test::random_params(20, H, 0.3f, 92, true);
    p.hidden_type = HiddenType::ternary;
    backend->set_params(p);
    const LogZEstimate estimate = estimate_log_z(*backend, p, options);
    EXPECT_EQ(estimate.method, H == 12 ? "exact" : "ais") << "H = " << H;
    if (H == 12) {
      EXPECT_EQ(estimate.log_z, exact_log_partition(p));
    }
  }
  Params big = test::random_params(20, 16, 0.3f, 93, false);
  big.hidden_type = HiddenType::ternary;
  backend->set_params(big);
  options.method = LogZMethod::exact;
  EXPECT_INPUT_ERROR(estimate_log_z(*backend, big, options), "ternary", "3^H", "H <= 15");
}

TEST(AisCpu, RefusesRequestsThatDoNotFitTheModel) {
  const Params p = test::random_params(5, 3, 1.0f, 95, false);
  AisRequest good;
  good.base_bias.assign(5, 0.0f);
  good.betas = {0.0, 0.5, 1.0};
  good.runs = 2;
  EXPECT_NO_THROW(ais_cpu(p, good));
  AisRequest bad = good;
  bad.base_bias.assign(4, 0.0f);
  EXPECT_THROW(ais_cpu(p, bad), InputError);
  bad = good;
  bad.betas = {0.0, 0.7, 0.5, 1.0};
  EXPECT_THROW(ais_cpu(p, bad), InputError);
  bad = good;
  bad.betas = {0.1, 1.0};
  EXPECT_THROW(ais_cpu(p, bad), InputError);
  bad = good;
  bad.runs = 0;
  EXPECT_THROW(ais_cpu(p, bad), InputError);
  bad = good;
  bad.base_bias[2] = NAN;
  EXPECT_THROW(ais_cpu(p, bad), InputError);
}

// estimate_log_z runs the base-rate base on AIS streams [0, runs) and the uniform base on
// [runs, 2 runs) (AisRequest::first_stream), so that the two estimates it takes the larger of are
// independent draws. A recording backend sees both requests; deterministic.
class RecordingAisBackend : public test::ForwardingCpuBackend {
 public:
  std::vector<uint64_t> first_streams;
  AisResult ais(const AisRequest& request) override {
    first_streams.push_back(request.first_stream);
    return inner().ais(request);
  }
};
TEST(LogZ, TheTwoBasesRunOnDisjointStreams) {
  const Params p = test::random_params(12, 30, 0.3f, 7, true);
  RecordingAisBackend backend;
  backend.set_params(p);
  LogZOptions options;
  options.method = LogZMethod::ais;
  options.base_rate.assign(static_cast<size_t>(p.visible), 1.5f);
  options.ais_betas = 100;
  options.ais_runs = 4;
  const LogZEstimate estimate = estimate_log_z(backend, p, options);
  ASSERT_EQ(estimate.bases.size(), 2u);
  EXPECT_EQ(estimate.bases[0].name, "base-rate");
  EXPECT_EQ(backend.first_streams, (std::vector<uint64_t>{0, 4}));
}

}  // namespace
}  // namespace rbm
