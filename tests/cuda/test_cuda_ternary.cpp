// Ternary hidden units (h in {-1, 0, 1}, issue 7) on the CUDA backend against exact answers: the
// graph recaptured for a new hidden type, the sampler's law (fp32, TF32, batched and packed),
// exact log Z over the 3^H hidden states against a sum over the visible states, and AIS's
// unbiasedness. The comparisons with the CPU are the binary tests run on ternary models too:
// CudaBackend.TernaryMatchesCpuOnSyntheticImages (single-sample CD, all engines),
// CudaMinibatch.Ternary{Cd,Pcd}MatchesCpu, CudaSampler.ChainsMatchCpu,
// CudaEval.ExactLogPartitionMatchesCpu and CudaEval.AisWeightsMatchCpuRunByRun. Every GPU test
// skips without a device; the exact law of the sampler test is checked on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/model.hpp"
#include "kernels/cuda_backend.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

Params ternary(Params p) {
  p.hidden_type = HiddenType::ternary;
  return p;
}

// 28 x 28 images of a vertical bar, drawn from Philox: pixel on with probability 0.6 in columns
// 10..17, 0.05 elsewhere.
Dataset bar_images(int64_t rows, uint32_t seed) {
  Dataset data;
  data.rows = rows;
  data.labels.assign(static_cast<size_t>(rows), 1);
  const uint64_t key = philox_key(seed, Purpose::init);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < data.cols(); ++i) {
      const int column = i % data.width;
      const float p = column >= 10 && column <= 17 ? 0.6f : 0.05f;
      data.pixels.push_back(static_cast<uint8_t>(
          philox_uniform(key, static_cast<uint64_t>(r), 0, static_cast<uint32_t>(i)) < p));
    }
  }
  return data;
}

// A backend that trained a binary model and is handed a ternary one of the same shape must not
// replay the binary graph: the result equals a fresh backend's bit for bit.
TEST(CudaTernary, SwitchingHiddenTypeRecapturesTheGraph) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Dataset data = bar_images(100, 4);
  Recipe recipe;
  recipe.seed = 5;
  const Params binary_start = init_params(recipe, data);
  const Params ternary_start = ternary(binary_start);
  const std::unique_ptr<Backend> reused = make_cuda_backend(), fresh = make_cuda_backend();
  reused->stage(data);
  reused->set_params(binary_start);
  reused->train_cd(recipe, 0, 10);
  reused->set_params(ternary_start);
  reused->train_cd(recipe, 0, 10);
  fresh->stage(data);
  fresh->set_params(ternary_start);
  fresh->train_cd(recipe, 0, 10);
  EXPECT_EQ(reused->get_params().W, fresh->get_params().W);
  EXPECT_EQ(reused->get_params().b, fresh->get_params().b);
  EXPECT_EQ(reused->get_params().hidden_type, HiddenType::ternary);
}

// --- the sampler ------------------------------------------------------------------------------

// The tiny ternary model of the law test: d = 6, H = 4 (81 hidden states), W, b, a ~ N(0, 0.7^2).
Params tiny_ternary_model() {
  return ternary(test::random_params(6, 4, 0.7f, 4242, /*visible_bias=*/true));
}

// log of p*(x) = exp(a'x) prod_j (1 + 2 cosh(w_j'x + b_j)), p(x) unnormalized, over the 2^d
// states x_i = (index >> i) & 1, in double.
std::vector<double> ternary_visible_log_weights(const Params& p) {
  const int d = p.visible, H = p.hidden;
  std::vector<double> log_p(size_t{1} << d);
  for (size_t x = 0; x < log_p.size(); ++x) {
    double v = 0.0;
    for (int i = 0; i < d && p.has_visible_bias(); ++i) v += ((x >> i) & 1) ? p.a[i] : 0.0;
    for (int j = 0; j < H; ++j) {
      double t = p.b[j];
      for (int i = 0; i < d; ++i) t += ((x >> i) & 1) ? p.W[static_cast<size_t>(i) * H + j] : 0.0;
      v += log_one_plus_two_cosh(t);
    }
    log_p[x] = v;
  }
  return log_p;
}

// log Z = log sum_x p*(x), by the other side of the model from the hidden enumeration (d <= 16).
double log_z_over_visible_states(const Params& p) {
  const std::vector<double> log_p = ternary_visible_log_weights(p);
  const double top = *std::max_element(log_p.begin(), log_p.end());
  double sum = 0.0;
  for (const double v : log_p) sum += std::exp(v - top);
  return top + std::log(sum);
}

// p(x) of a ternary model exactly, over the 2^d states.
std::vector<double> ternary_visible_law(const Params& p) {
  std::vector<double> law = ternary_visible_log_weights(p);
  const double log_z = log_z_over_visible_states(p);
  for (double& v : law) v = std::exp(v - log_z);
  return law;
}

// The chains' law after `steps` steps x -> h -> x' from the uniform law, exactly: the 2^d x 2^d
// kernel K = P(h | x) P(x' | h) summed over the 3^H hidden states, applied `steps` times.
std::vector<double> ternary_law_after(const Params& p, int steps) {
  const int d = p.visible, H = p.hidden;
  const size_t nx = size_t{1} << d;
  size_t nh = 1;
  for (int j = 0; j < H; ++j) nh *= 3;
  const auto unit = [](size_t h, int j) {  // h_j in {-1, 0, 1}: base-3 digit j of h, less 1
    for (int k = 0; k < j; ++k) h /= 3;
    return static_cast<double>(h % 3) - 1.0;
  };
  std::vector<double> kernel(nx * nx, 0.0);
  for (size_t x = 0; x < nx; ++x) {
    for (size_t h = 0; h < nh; ++h) {
      double p_h = 1.0;  // P(h | x) = prod_j exp(h_j t_j) / (1 + 2 cosh t_j)
      for (int j = 0; j < H; ++j) {
        double t = p.b[j];
        for (int i = 0; i < d; ++i) t += ((x >> i) & 1) ? p.W[static_cast<size_t>(i) * H + j] : 0.0;
        p_h *= std::exp(unit(h, j) * t - log_one_plus_two_cosh(t));
      }
      for (size_t y = 0; y < nx; ++y) {
        double p_y = 1.0;  // P(x' = y | h)
        for (int i = 0; i < d; ++i) {
          double s = p.a[i];
          for (int j = 0; j < H; ++j) s += p.W[static_cast<size_t>(i) * H + j] * unit(h, j);
          const double on = 1.0 / (1.0 + std::exp(-s));
          p_y *= ((y >> i) & 1) ? on : 1.0 - on;
        }
        kernel[x * nx + y] += p_h * p_y;
      }
    }
  }
  std::vector<double> law(nx, 1.0 / static_cast<double>(nx)), next(nx);
  for (int s = 0; s < steps; ++s) {
    std::fill(next.begin(), next.end(), 0.0);
    for (size_t x = 0; x < nx; ++x) {
      for (size_t y = 0; y < nx; ++y) next[y] += law[x] * kernel[x * nx + y];
    }
    law.swap(next);
  }
  return law;
}

constexpr int kBurnIn = 200;

// CPU only: after kBurnIn steps the chains' law is the stationary one to 1e-9 in total variation
// (so it adds nothing to the chi-square below); the stationary law is the ternary p(x), which
// host/evaluate's visible_distribution gives too, and every state is expected over 5 times in
// the 2^20 chains below.
TEST(CudaTernaryStatistics, TinyModelMixesWithinBurnIn) {
  const Params params = tiny_ternary_model();
  const std::vector<double> stationary = ternary_visible_law(params);
  const std::vector<double> law = ternary_law_after(params, kBurnIn);
  ASSERT_EQ(law.size(), stationary.size());
  EXPECT_LT(test::total_variation(law, stationary), 1e-9);
  const std::vector<double> host = visible_distribution(params);
  ASSERT_EQ(host.size(), stationary.size());
  for (size_t x = 0; x < host.size(); ++x) EXPECT_NEAR(host[x], stationary[x], 1e-12) << x;
  EXPECT_GE(*std::min_element(stationary.begin(), stationary.end()) * double{1 << 20}, 5.0);
}

// 2^20 independent chains from Bernoulli(1/2) states, kBurnIn steps each, one final state per
// chain, scored by Pearson's chi-square over the 64 visible states against the exact ternary p(x)
// (every state is expected well over 5 times: asserted). Under a correct sampler the statistic is
// chi-square with 63 degrees of freedom and test::chi_square_limit_1e6(63) = 138.3 is above its
// 1 - 1e-6 quantile (131.4), so each of the three samplers (fp32, TF32, batched and packed) fails
// with probability < 1e-6. TF32 is exact for h in {-1, 0, 1} but rounds W to 10 mantissa bits,
// which moves these probabilities by ~1e-3 relative: a chi-square noncentrality N sum dp^2 / p of
// 0.05 (W to nearest) and 0.10 (truncated) against the fp32 law at N = 2^20 for this model
// (computed on the CPU), a bias the 1e-6 bound should not leave to chance. So the TF32 sampler is
// scored against the exact laws of W rounded to nearest and of W truncated (cuBLAS does not say
// which its TF32 mode does) and of W itself (it may pick a kernel without tensor cores for these
// shapes): the smallest of the three statistics is below the one against the law it follows, so a
// correct sampler fails with probability < 1e-6 whichever it is. The same states scored against the
// model with binary hidden units must fail, or the test could pass anything.
TEST(CudaTernary, SamplerMatchesExactDistribution) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Params params = tiny_ternary_model();
  const int d = params.visible;
  const int64_t n_chains = int64_t{1} << 20;
  const std::vector<double> p = ternary_visible_law(params);
  Params as_binary = params;
  as_binary.hidden_type = HiddenType::binary;
  const std::vector<double> p_binary = visible_distribution(as_binary);
  const auto chi_square = [&](const std::vector<uint8_t>& states, const std::vector<double>& law) {
    std::vector<double> counts(law.size(), 0.0);
    for (int64_t c = 0; c < n_chains; ++c) {
      size_t index = 0;
      for (int i = 0; i < d; ++i) index |= size_t{states[static_cast<size_t>(c * d + i)]} << i;
      counts[index] += 1.0;
    }
    double statistic = 0.0;
    for (size_t x = 0; x < law.size(); ++x) {
      const double expected = law[x] * static_cast<double>(n_chains);
      statistic += (counts[x] - expected) * (counts[x] - expected) / expected;
    }
    return statistic;
  };
  ASSERT_GE(*std::min_element(p.begin(), p.end()) * static_cast<double>(n_chains), 5.0);
  const double limit = test::chi_square_limit_1e6(63);
  for (const CudaOptions options :
       {CudaOptions{}, CudaOptions{.tf32 = true},
        CudaOptions{.gibbs_batch_chains = 300000, .packed_states = true}}) {
    SCOPED_TRACE(std::string(options.tf32 ? "TF32" : "fp32") +
                 (options.packed_states ? ", batched and packed" : ""));
    std::vector<uint8_t> states = random_initial_states(n_chains, d, 2719);
    const std::unique_ptr<Backend> gpu = make_cuda_backend(options);
    gpu->set_params(params);
    gpu->gibbs(states, n_chains, 2719, 0, kBurnIn);
    ASSERT_TRUE(std::all_of(states.begin(), states.end(), [](uint8_t x) { return x <= 1; }));
    double statistic = chi_square(states, p);
    if (options.tf32) {
      int ties = 0;
      statistic = std::min(
          {statistic,
           chi_square(states, ternary_visible_law(test::with_tf32_weights(params, false, &ties))),
           chi_square(states, ternary_visible_law(test::with_tf32_weights(params, true)))});
      EXPECT_EQ(ties, 0) << "a weight halfway between two TF32 values: ties to even would differ";
    }
    std::printf("ternary gibbs chi-square %.2f, 63 degrees of freedom, limit %.2f\n", statistic,
                limit);
    EXPECT_LT(statistic, limit);
    EXPECT_GT(chi_square(states, p_binary), limit) << "binary units' law not rejected";
  }
}

// --- exact log Z and AIS ----------------------------------------------------------------------

// The device enumerates the 3^H hidden states in the reflected base-3 Gray code; the reference
// sums the same Z over the 2^d visible states (d <= 16). Both are sums of positive terms in
// double, in other orders: a relative 1e-15 or so of |log Z| apart, so 1e-9 relative is far above
// that and far below what a wrong walk moves (a state missed, doubled or stepped the wrong way
// changes the running pre-activations of every later state of its warp's range). The comparison
// with the CPU's own enumeration at d = 784 and 3000 is CudaEval.ExactLogPartitionMatchesCpu.
TEST(CudaTernary, ExactLogPartitionMatchesVisibleSum) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  for (const auto& [d, H, scale] :
       {std::tuple{7, 1, 1.0f}, std::tuple{7, 5, 1.0f}, std::tuple{10, 6, 0.5f},
        std::tuple{12, 9, 0.5f}, std::tuple{16, 15, 0.3f}}) {
    SCOPED_TRACE("d = " + std::to_string(d) + ", H = " + std::to_string(H));
    const Params p = ternary(test::random_params(d, H, scale, 700 + H, /*visible_bias=*/H != 5));
    gpu->set_params(p);
    const double want = log_z_over_visible_states(p);
    EXPECT_NEAR(gpu->exact_log_partition(), want, 1e-9 * std::max(1.0, std::fabs(want)));
  }
}

// 3^16 states are refused with the reason (InputError, as the CLI reports it); a binary model of
// the same shape is still enumerated.
TEST(CudaTernary, ExactLogPartitionRefusesMoreThan15HiddenUnits) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  Params p = ternary(test::random_params(10, 16, 0.3f, 801, false));
  gpu->set_params(p);
  try {
    gpu->exact_log_partition();
    ADD_FAILURE() << "a ternary model with H = 16 was enumerated";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("H <= 15"), std::string::npos) << e.what();
  }
  p.hidden_type = HiddenType::binary;
  gpu->set_params(p);
  EXPECT_TRUE(std::isfinite(gpu->exact_log_partition()));
}

// AIS is unbiased for any schedule: E[w] = Z / Z_0 with Z_0 = prod_i (1 + e^{c_i}) 3^H for
// ternary units. On a tiny model (d = 6, H = 4) with Z exact, Zhat = Z_0 mean(w) of 2^17 runs is
// within 6 of its standard errors of Z (twice summarize_ais's 3-standard-error half-width): under
// the central limit theorem a correct implementation fails with probability 2e-9 per schedule,
// while a wrong increment (softplus for log(1 + 2 cosh), 2^H for 3^H) or transition moves Zhat by
// far more. A 3-step and a 200-step schedule.
TEST(CudaTernary, AisIsUnbiasedAgainstExact) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Params p = ternary(test::random_params(6, 4, 1.0f, 53, /*visible_bias=*/true));
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  gpu->set_params(p);
  const double log_z = log_z_over_visible_states(p);
  for (const int64_t steps : {int64_t{3}, int64_t{200}}) {
    SCOPED_TRACE(std::to_string(steps) + " steps");
    AisRequest request;
    request.base_bias = {0.3f, -0.4f, 1.0f, 0.0f, -1.2f, 0.6f};
    request.betas = ais_betas(steps);
    request.runs = int64_t{1} << 17;
    request.seed = 54;
    const AisResult result = gpu->ais(request);
    EXPECT_NEAR(result.log_z_base, ais_log_z_base(request.base_bias, 4, HiddenType::ternary),
                1e-12);
    const AisSummary summary = summarize_ais(result);
    // |Z - Zhat| / Zhat against 6 standard errors / Zhat = 2 (Zhat_high / Zhat - 1).
    EXPECT_LE(std::fabs(std::expm1(log_z - summary.log_z)),
              2.0 * std::expm1(summary.log_z_high - summary.log_z))
        << "log Z " << log_z << ", AIS " << summary.log_z << " [" << summary.log_z_low << ", "
        << summary.log_z_high << "]";
  }
}

}  // namespace
}  // namespace rbm
