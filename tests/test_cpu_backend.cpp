// The CPU backend, the reference: its building blocks against long-double computations, one CD-k
// iteration against the formula of design.md, and determinism of the counter-based draws.
#include <cblas.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/errors.hpp"
#include "host/gibbs_blocks.hpp"
#include "host/numeric.hpp"
#include "host/thread_choice.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"
#include "tests/cd_reference.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

TEST(CpuKernels, PreactivationsMatchLongDouble) {
  const Params p = test::random_params(40, 13, 0.5f, 3, /*visible_bias=*/true);
  std::vector<uint8_t> x(40);
  std::vector<float> h(13);
  for (int i = 0; i < 40; ++i) x[i] = static_cast<uint8_t>((i * 7) % 3 == 0);
  for (int j = 0; j < 13; ++j) h[j] = static_cast<float>(j % 2);
  std::vector<float> pre_h(13), pre_v(40);
  cpu::hidden_preactivation(p, x.data(), pre_h.data());
  cpu::visible_preactivation(p, h.data(), pre_v.data());
  // A float sum of n terms errs by at most n * eps * sum |terms| (n <= 41 here).
  for (int j = 0; j < 13; ++j) {
    long double want = p.b[j], magnitude = std::fabs(p.b[j]);
    for (int i = 0; i < 40; ++i) {
      if (x[i]) want += p.W[i * 13 + j], magnitude += std::fabs(p.W[i * 13 + j]);
    }
    EXPECT_NEAR(pre_h[j], static_cast<double>(want),
                static_cast<double>(41 * FLT_EPSILON * magnitude));
  }
  for (int i = 0; i < 40; ++i) {
    long double want = p.a[i], magnitude = std::fabs(p.a[i]);
    for (int j = 0; j < 13; ++j) {
      want += p.W[i * 13 + j] * h[j], magnitude += std::fabs(p.W[i * 13 + j] * h[j]);
    }
    EXPECT_NEAR(pre_v[i], static_cast<double>(want),
                static_cast<double>(14 * FLT_EPSILON * magnitude));
  }
}

TEST(CpuKernels, VectorizedUniformsEqualTheScalarDefinition) {
  // philox_uniforms runs four groups of units at a time (AVX2: 32 units a group; AVX-512: 64),
  // and the last units in one call of 1 to 4 groups: n 1..3, 31..33, 63..65, 100, 127..129,
  // 255..257, 400, 600 and 784 take every count of groups on both paths, with tails of several
  // lengths. Every unit must be exactly philox_uniform's value, on each path this CPU runs.
  std::vector<float> got(1000);
  const std::vector<int> sizes = {1,   2,   3,   31,  32,  33,  63,  64,  65, 100,
                                  127, 128, 129, 255, 256, 257, 400, 600, 784};
  int paths = 0;
  for (const cpu::Simd simd : {cpu::Simd::scalar, cpu::Simd::avx2, cpu::Simd::avx512}) {
    if (!cpu::simd_usable(simd)) continue;
    ++paths;
    for (const int first : {0, 4, 384}) {
      for (const int n : sizes) {
        for (const uint64_t stream : {uint64_t{0}, uint64_t{123456789}, ~uint64_t{0}}) {
          const uint64_t key = philox_key(0xDEADBEEF, Purpose::train);
          std::fill(got.begin(), got.end(), -1.0f);
          cpu::philox_uniforms(simd, key, stream, 7, first, n, got.data());
          for (int u = 0; u < n; ++u) {
            ASSERT_EQ(got[u], philox_uniform(key, stream, 7, static_cast<uint32_t>(first + u)))
                << cpu::simd_name(simd) << " first " << first << " n " << n << " unit " << u;
          }
          ASSERT_EQ(got[n], -1.0f) << cpu::simd_name(simd) << ": wrote past n " << n;
        }
      }
    }
  }
  std::printf("[ checked ] philox_uniforms on %d paths (%s by default)\n", paths,
              cpu::simd_name(cpu::simd()));
}

// The CPU kernels take the fastest instructions this CPU runs (host/simd.hpp): AVX-512 where the
// kernel lists avx512f among the CPU's flags (/proc/cpuinfo: a second opinion on the run-time
// check) and the build has an AVX-512 path (an AVX2 baseline), else the build's AVX2.
TEST(CpuKernels, SimdIsTheBestThisCpuRuns) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line) && line.rfind("flags", 0) != 0) {
  }
  if (line.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  const bool has_avx512f = RBM_SIMD_AVX512 && (line + " ").find(" avx512f ") != std::string::npos;
  EXPECT_EQ(cpu::simd_usable(cpu::Simd::avx512), has_avx512f) << line;
#if defined(__AVX2__) && defined(__FMA__)
  EXPECT_TRUE(cpu::simd_usable(cpu::Simd::avx2));
  EXPECT_EQ(cpu::simd(), has_avx512f ? cpu::Simd::avx512 : cpu::Simd::avx2);
#endif
}

// Chooses the CPU kernels' instructions for a test (host/simd.hpp), and restores the default.
class ScopedSimd {
 public:
  explicit ScopedSimd(cpu::Simd simd) : before_(cpu::simd()) { cpu::set_simd(simd); }
  ~ScopedSimd() { cpu::set_simd(before_); }
  ScopedSimd(const ScopedSimd&) = delete;
  ScopedSimd& operator=(const ScopedSimd&) = delete;

 private:
  cpu::Simd before_;
};

// The instructions the tests below compare: each usable one.
std::vector<cpu::Simd> usable_simds() {
  std::vector<cpu::Simd> usable;
  for (const cpu::Simd simd : {cpu::Simd::scalar, cpu::Simd::avx2, cpu::Simd::avx512}) {
    if (cpu::simd_usable(simd)) usable.push_back(simd);
  }
  return usable;
}

// sum_of_rows adds each element's rows in the order given, in float, whatever its blocks (8-float
// blocks of 8, 4 and 1; with AVX-512, 16-float blocks of 8, 4 and 1 first where the rows are at
// least 128 wide): the same bits as the plain loop, for widths that take every kind of block and
// each tail, rows repeated and out of order, and no rows at all.
TEST(CpuKernels, SumOfRowsAddsTheRowsInOrderOnEveryPath) {
  constexpr int kRows = 60;
  for (const int width : {8, 16, 24, 32, 40, 64, 104, 120, 128, 136, 200, 504, 784, 800}) {
    const size_t stride = static_cast<size_t>(width) + 8;  // padding that must not be read
    std::vector<float> matrix(kRows * stride);
    for (size_t k = 0; k < matrix.size(); ++k) {
      matrix[k] = philox_uniform(9, width, 0, static_cast<uint32_t>(k)) * 2.0f - 1.0f;
    }
    for (int r = 0; r < kRows; ++r) matrix[r * stride + width] = std::nanf("");  // the padding
    for (const std::vector<int>& rows :
         {std::vector<int>{}, std::vector<int>{3}, std::vector<int>{5, 1, 5, 59, 0, 17, 2, 2},
          std::vector<int>{0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                           13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                           26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36}}) {
      std::vector<float> want(static_cast<size_t>(width), 0.0f);
      for (const int r : rows) {
        for (int j = 0; j < width; ++j) want[j] += matrix[r * stride + j];
      }
      for (const cpu::Simd simd : usable_simds()) {
        const ScopedSimd chosen(simd);
        std::vector<float> got(static_cast<size_t>(width) + 1, -7.0f);
        cpu::sum_of_rows(matrix.data(), stride, rows.data(), static_cast<int>(rows.size()), width,
                         got.data());
        for (int j = 0; j < width; ++j) {
          ASSERT_EQ(got[j], want[j]) << cpu::simd_name(simd) << ": width " << width << ", "
                                     << rows.size() << " rows, element " << j;
        }
        EXPECT_EQ(got[width], -7.0f) << cpu::simd_name(simd) << ": wrote past width " << width;
      }
    }
  }
}

// What runs compiled a second time for AVX-512 (host/simd.hpp's with_simd: the sampler's and
// trainers' passes after their GEMMs, the single-sample recipe's loop, AIS's runs) gives the same
// bits on every path, as the README says a model trains to the same bits with or without
// AVX-512: sigmoid_bernoulli_rows on pre-activations from -100 to 100 and the infinities, the
// sampler's binary and ternary chains, 300 iterations of the reference recipe with visible biases
// (binary and ternary), and AIS's log weights at d 784, H 50 (binary and ternary).
TEST(CpuKernels, EveryPathGivesTheSameBits) {
  constexpr int kRowsOfUnits = 3, kUnits = 301;
  std::vector<float> pre(kRowsOfUnits * kUnits), bias(kUnits);
  for (int k = 0; k < kRowsOfUnits * kUnits; ++k) {
    pre[k] = -100.0f + 200.0f * philox_uniform(4, 0, 0, static_cast<uint32_t>(k));
  }
  pre[0] = std::numeric_limits<float>::infinity();
  pre[1] = -std::numeric_limits<float>::infinity();
  pre[2] = -87.5f;
  for (int u = 0; u < kUnits; ++u) bias[u] = 0.01f * static_cast<float>(u % 7) - 0.03f;
  const Dataset train = load_mnist(RBM_MNIST_DIR, 3, Split::train);
  struct Outputs {
    std::vector<float> prob, sample;
    std::vector<uint8_t> chains[2];  // binary, ternary hidden units
    std::vector<double> ais[2];      // log weights
    Params recipe[2];                // after 300 iterations
  };
  const auto outputs = [&] {
    Outputs out;
    std::vector<float> scratch = pre, uniforms(kUnits);
    out.prob.resize(pre.size());
    out.sample.resize(pre.size());
    cpu::sigmoid_bernoulli_rows(scratch.data(), kRowsOfUnits, kUnits, bias.data(), 11, 3, 5,
                                out.prob.data(), out.sample.data(), uniforms.data());
    for (const int t : {0, 1}) {
      const HiddenType type = t == 0 ? HiddenType::binary : HiddenType::ternary;
      Params p = test::random_params(784, 50, 0.1f, 12, true);
      p.hidden_type = type;
      out.chains[t].assign(20 * 784, 0);
      cpu::sample_chains(p, philox_key(13, Purpose::sample), out.chains[t].data(), 20, 0, 30, 1);
      const std::unique_ptr<Backend> backend = make_cpu_backend(CpuOptions{.recipe_threads = 1});
      backend->set_params(p);
      AisRequest request;
      request.base_bias.assign(784, -1.0f);
      request.betas = ais_betas(200);
      request.runs = 4;
      out.ais[t] = backend->ais(request).log_weights;
      Recipe recipe;
      recipe.visible_bias = true;
      recipe.hidden_type = type;
      backend->stage(train);
      backend->set_params(init_params(recipe, train));
      backend->train_cd(recipe, 0, 300);
      out.recipe[t] = backend->get_params();
    }
    return out;
  };
  const std::vector<cpu::Simd> simds = usable_simds();
  ASSERT_FALSE(simds.empty());
  Outputs first;
  {
    const ScopedSimd chosen(simds.front());
    first = outputs();
  }
  for (size_t k = 1; k < simds.size(); ++k) {
    const ScopedSimd chosen(simds[k]);
    SCOPED_TRACE(std::string(cpu::simd_name(simds[k])) + " against " +
                 cpu::simd_name(simds.front()));
    const Outputs other = outputs();
    EXPECT_EQ(other.prob, first.prob);
    EXPECT_EQ(other.sample, first.sample);
    for (const int t : {0, 1}) {
      SCOPED_TRACE(t == 0 ? "binary" : "ternary");
      EXPECT_EQ(other.chains[t], first.chains[t]);
      EXPECT_EQ(other.ais[t], first.ais[t]);
      EXPECT_EQ(other.recipe[t].W, first.recipe[t].W);
      EXPECT_EQ(other.recipe[t].b, first.recipe[t].b);
      EXPECT_EQ(other.recipe[t].a, first.recipe[t].a);
    }
  }
  EXPECT_NE(first.recipe[0].W, init_params(Recipe{}, train).W);
  std::printf("[ checked ] %zu paths\n", simds.size());
}

TEST(CpuKernels, IndicesWhereLessListsEveryUnitWhereBelowIsLessInOrder) {
  // The AVX2 path packs each block of 8 through a table of the 256 masks, and the last n % 8 run
  // one at a time: n 0..40 and 784 take every tail length; the values cover every mask of a
  // block, ties (not less) and NaN (never less, on either side).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<int> sizes(41);
  std::iota(sizes.begin(), sizes.end(), 0);
  sizes.push_back(784);
  for (const int n : sizes) {
    for (int pattern = 0; pattern < 300; ++pattern) {
      std::vector<float> below(static_cast<size_t>(n)), above(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        const int bit = ((pattern * 2654435761u) >> (i % 29)) & 1;  // blocks see varied masks
        below[i] = 0.5f;
        above[i] = bit ? 0.75f : (i % 5 == 0 ? 0.5f : 0.25f);        // 0.5: a tie, not less
        if (i % 37 == 3) (pattern % 2 ? below[i] : above[i]) = nan;  // never less
      }
      for (int i = 0; i < std::min(n, 8); ++i) above[i] = (pattern >> i) & 1 ? 1.0f : 0.0f;
      std::vector<int> want;
      for (int i = 0; i < n; ++i) {
        if (below[i] < above[i]) want.push_back(i);
      }
      // Eight guard entries past the n that out must hold: the block stores must not reach them.
      std::vector<int> got(static_cast<size_t>(n) + 8, -1);
      const int count = cpu::indices_where_less(below.data(), above.data(), n, got.data());
      ASSERT_EQ(count, static_cast<int>(want.size())) << "n " << n << " pattern " << pattern;
      for (size_t g = static_cast<size_t>(n); g < got.size(); ++g) ASSERT_EQ(got[g], -1) << n;
      got.resize(static_cast<size_t>(count));
      ASSERT_EQ(got, want) << "n " << n << " pattern " << pattern;
    }
  }
}

TEST(CpuKernels, ZeroModelMakesEveryUnitOneWithProbabilityHalf) {
  // W = 0, b = 0 (and a = 0): every conditional is sigm(0) = 1/2. Per unit, the count of ones over
  // N chains must lie within 6 standard deviations of N/2 (two-sided tail 2e-9 per unit; 48
  // units: < 1e-7 in all).
  constexpr int d = 32, H = 16, kChains = 1 << 16;
  Params zero;
  zero.visible = d;
  zero.hidden = H;
  zero.W.assign(d * H, 0.0f);
  zero.b.assign(H, 0.0f);
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(zero);
  std::vector<uint8_t> states(static_cast<size_t>(kChains) * d, 1);
  backend->gibbs(states, kChains, 5, 0, 1);
  const double sd = std::sqrt(kChains * 0.25);
  for (int i = 0; i < d; ++i) {
    int64_t ones = 0;
    for (int c = 0; c < kChains; ++c) ones += states[static_cast<size_t>(c) * d + i];
    EXPECT_NEAR(static_cast<double>(ones), kChains / 2.0, 6.0 * sd) << "visible unit " << i;
  }
  std::vector<float> pre(H, 0.0f), prob(H), sample(H);
  std::vector<int64_t> ones(H, 0);
  for (int stream = 0; stream < kChains; ++stream) {
    cpu::sigmoid_bernoulli(pre.data(), H, philox_key(5, Purpose::sample), stream, 0, prob.data(),
                           sample.data());
    for (int j = 0; j < H; ++j) ones[j] += static_cast<int64_t>(sample[j]);
  }
  for (int j = 0; j < H; ++j) {
    EXPECT_EQ(prob[j], 0.5f);
    EXPECT_NEAR(static_cast<double>(ones[j]), kChains / 2.0, 6.0 * sd) << "hidden unit " << j;
  }
}

// One CD-3 iteration from `start` on `data`, for 40 seeds and three iteration numbers, against the
// long-double recomputation of the formula (tests/cd_reference.hpp).
//
// Per-entry bound on |got - want| (u = 2^-24; a float sum of n terms errs by at most n u times
// the sum of their sizes, in any order). W_ij + lr (x0_i m_j(x0) - xk_i m_j(xk)), m = E[h | t]:
//  - each t_j = b_j + sum_i x_i W_ij in float errs by at most (n_x + 1) u S_j(x), n_x the pixels
//    on, S_j(x) = |b_j| + sum_i x_i |W_ij|; m's slope is at most 1/4 (sigm) or 2/3 (G, at t = 0),
//    and float sigm or G adds 8u: each term's m errs by at most
//    e_j(x) = slope (n_x + 1) u S_j(x) + 8u, times lr, for the x0 term and the xk term;
//  - the backend adds lr m_j(x0) to W_ij, then subtracts lr m_j(xk) (b_j: adds lr (m(x0) - m(xk)),
//    a_i: adds lr, subtracts lr), and the reference rounds its long-double result to float: each
//    entry p carries at most 3u (|p| + 3 lr) of those roundings (|m| <= 1).
// So |dW_ij| <= lr (x0_i e_j(x0) + xk_i e_j(xk)) + 3u (|W_ij| + 3 lr); b_j the same with
// x0_i = xk_i = 1; a_i: 3u (|a_i| + 3 lr). Draws are compared only where every uniform keeps 1e-4
// from its probability, far beyond these errors.
void expect_one_iteration_is_the_cd_formula(const Params& start, const Dataset& data, float lr) {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(data);
  Recipe recipe;
  recipe.k = 3;
  recipe.lr = lr;
  const int d = start.visible, H = start.hidden;
  const double u = FLT_EPSILON / 2.0;
  const double slope = start.hidden_type == HiddenType::ternary ? 2.0 / 3.0 : 0.25;
  // e_j(x) above, (H), for a chain state x (d).
  const auto mean_error = [&](const std::vector<uint8_t>& x) {
    int on = 0;
    for (int i = 0; i < d; ++i) on += x[i];
    std::vector<double> e(static_cast<size_t>(H));
    for (int j = 0; j < H; ++j) {
      double s = std::fabs(start.b[j]);
      for (int i = 0; i < d; ++i)
        s += x[i] ? std::fabs(start.W[static_cast<size_t>(i) * H + j]) : 0.0f;
      e[j] = slope * (on + 1) * u * s + 8.0 * u;
    }
    return e;
  };
  int checked = 0;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    recipe.seed = seed;
    for (int64_t t : {0, 1, 1000003}) {
      const test::CdReference ref = test::cd_iteration_reference(start, data, recipe, t);
      // A draw within 1e-4 of its probability could go either way between float and double.
      if (ref.min_margin < 1e-4) continue;
      backend->set_params(start);
      backend->train_cd(recipe, t, 1);
      const Params got = backend->get_params();
      const std::vector<double> e0 = mean_error(ref.x0), ek = mean_error(ref.xk);
      for (int i = 0; i < d; ++i) {
        for (int j = 0; j < H; ++j) {
          const size_t k = static_cast<size_t>(i) * H + j;
          const double bound = lr * (ref.x0[i] * e0[j] + ref.xk[i] * ek[j]) +
                               3.0 * u * (std::fabs(start.W[k]) + 3.0 * lr);
          ASSERT_NEAR(got.W[k], ref.after.W[k], bound) << "seed " << seed << " W " << k;
        }
      }
      for (int j = 0; j < H; ++j) {
        const double bound = lr * (e0[j] + ek[j]) + 3.0 * u * (std::fabs(start.b[j]) + 3.0 * lr);
        ASSERT_NEAR(got.b[j], ref.after.b[j], bound) << "seed " << seed << " b " << j;
      }
      for (size_t i = 0; i < got.a.size(); ++i) {
        const double bound = 3.0 * u * (std::fabs(start.a[i]) + 3.0 * lr);
        ASSERT_NEAR(got.a[i], ref.after.a[i], bound) << "seed " << seed << " a " << i;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 30);  // most (seed, t) pairs are clear of ties
}

void expect_one_iteration_is_the_cd_formula(HiddenType type, int hidden = 3) {
  Params start = test::random_params(6, hidden, 1.0f, 21, /*visible_bias=*/true);
  start.hidden_type = type;
  expect_one_iteration_is_the_cd_formula(start, test::bit_images(6, {0b101101, 0b010011, 0b111000}),
                                         0.25f);
}

TEST(CpuBackend, OneIterationIsTheCdFormula) {
  expect_one_iteration_is_the_cd_formula(HiddenType::binary);
}
// Ternary hidden units (design.md): ternary draws from the same uniforms, G(t) for sigm(t).
TEST(CpuBackend, OneIterationIsTheCdFormulaForTernaryHiddenUnits) {
  expect_one_iteration_is_the_cd_formula(HiddenType::ternary);
}
// The reference recipe's shape on real images (784 x 100, W ~ N(0, 0.1^2), MNIST training
// threes): the vectorized rows, both shards and the padded hidden layer (100 -> 104), which the
// 6-pixel model above leaves to the scalar tails.
TEST(CpuBackend, OneIterationIsTheCdFormulaAtTheRecipesShape) {
  const Dataset threes = load_mnist(RBM_MNIST_DIR, 3, Split::train);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const bool visible_bias : {false, true}) {
      SCOPED_TRACE(std::string(type == HiddenType::ternary ? "ternary" : "binary") +
                   (visible_bias ? ", visible bias" : ""));
      Params start = test::random_params(784, 100, 0.1f, 5, visible_bias);
      start.hidden_type = type;
      expect_one_iteration_is_the_cd_formula(start, threes, 0.05f);
    }
  }
}

// More hidden than visible units (H 20 > d 6): the hidden draws' uniforms once overran a buffer
// sized d (rbm_cpu --hidden 1000 crashed); under AddressSanitizer this test catches that too.
TEST(CpuBackend, OneIterationIsTheCdFormulaWithMoreHiddenThanVisibleUnits) {
  expect_one_iteration_is_the_cd_formula(HiddenType::binary, 20);
  expect_one_iteration_is_the_cd_formula(HiddenType::ternary, 20);
}

TEST(CpuBackend, TrainingInPiecesEqualsOneCall) {
  const Params start = test::random_params(20, 7, 0.3f, 4, /*visible_bias=*/true);
  std::vector<uint32_t> patterns;
  for (uint32_t n = 0; n < 50; ++n) patterns.push_back(n * 2654435761u);
  const Dataset data = test::bit_images(20, patterns);
  Recipe recipe;
  recipe.lr = 0.05f;
  std::unique_ptr<Backend> whole = make_cpu_backend(), pieces = make_cpu_backend();
  for (Backend* b : {whole.get(), pieces.get()}) {
    b->stage(data);
    b->set_params(start);
  }
  whole->train_cd(recipe, 0, 500);
  pieces->train_cd(recipe, 0, 123);
  pieces->train_cd(recipe, 123, 377);
  const Params a = whole->get_params(), b = pieces->get_params();
  EXPECT_EQ(a.W, b.W);
  EXPECT_EQ(a.b, b.b);
  EXPECT_EQ(a.a, b.a);
  EXPECT_NE(a.W, start.W);
}

// Sampling in pieces (sample's loop between its looks at the stop signals) gives the same states
// as one call: the draws are named by the global step. Binary and ternary units.
TEST(CpuBackend, GibbsInPiecesEqualsOneCall) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    Params p = test::random_params(20, 7, 0.5f, 5, /*visible_bias=*/true);
    p.hidden_type = type;
    const std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->set_params(p);
    const int64_t chains = 37;
    std::vector<uint8_t> whole = random_initial_states(chains, 20, 8), pieces = whole;
    backend->gibbs(whole, chains, 9, 0, 50);
    for (const auto& [first, count] : {std::pair{0, 1}, {1, 2}, {3, 4}, {7, 43}}) {
      backend->gibbs(pieces, chains, 9, first, count);
    }
    EXPECT_EQ(whole, pieces) << hidden_type_name(type);
    EXPECT_NE(whole, random_initial_states(chains, 20, 8));
    // Negative counts are refused, as Backend::gibbs says (and the CUDA backend does).
    EXPECT_THROW(backend->gibbs(pieces, chains, 9, 50, -1), std::invalid_argument);
    EXPECT_THROW(backend->gibbs(pieces, chains, 9, -1, 1), std::invalid_argument);
    EXPECT_THROW(backend->gibbs(pieces, chains, 9, 0, 1, -1), std::invalid_argument);
    EXPECT_EQ(whole, pieces) << "a refused call changed the states";
  }
}

// Chains in blocks (sample's way with many chains): block [first, first + n) run as chains first..
// of the whole set (first_chain) gives the states of one call. The blocks start at multiples of
// kSampleTile, where one call's tiles start too (each tile is its own GEMM).
TEST(CpuBackend, GibbsInBlocksOfChainsEqualsOneCall) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    Params p = test::random_params(20, 7, 0.5f, 6, /*visible_bias=*/true);
    p.hidden_type = type;
    const std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->set_params(p);
    const int64_t chains = 2 * cpu::kSampleTile + 88, d = 20;
    std::vector<uint8_t> whole = random_initial_states(chains, d, 8), blocks = whole;
    backend->gibbs(whole, chains, 9, 3, 10);
    for (int64_t first = 0; first < chains; first += cpu::kSampleTile) {
      const int64_t n = std::min(cpu::kSampleTile, chains - first);
      backend->gibbs(std::span<uint8_t>(blocks).subspan(static_cast<size_t>(first * d),
                                                        static_cast<size_t>(n * d)),
                     n, 9, 3, 10, first);
    }
    EXPECT_EQ(whole, blocks) << hidden_type_name(type);
    // A block named as chains 0.. instead is other chains: the names matter.
    std::vector<uint8_t> renamed = random_initial_states(chains, d, 8);
    const std::span<uint8_t> last_block =
        std::span<uint8_t>(renamed).subspan(static_cast<size_t>(2 * cpu::kSampleTile * d));
    backend->gibbs(last_block, 88, 9, 3, 10);
    EXPECT_FALSE(
        std::equal(last_block.begin(), last_block.end(), whole.begin() + 2 * cpu::kSampleTile * d))
        << hidden_type_name(type);
  }
}

// The random initial states are the draws their names say (host/backend.hpp): unit i of chain c
// from its own philox_uniform, whatever the blocks of four units and the threads that make them; d
// 165 = 128 + 37 takes both of cpu::philox_uniforms' AVX2 paths (a 128-unit call, and a last call
// of two 32-unit groups whose extra units are dropped), and 1000 chains split over every thread.
TEST(GibbsBlocks, RandomInitialStatesAreTheNamedDraws) {
  const int d = 165;
  const int64_t chains = 1000;
  const std::vector<uint8_t> states = random_initial_states(chains, d, 5);
  const uint64_t key = philox_key(5, Purpose::sample);
  int64_t ones = 0, mismatches = 0;
  for (int64_t c = 0; c < chains; ++c) {
    for (int i = 0; i < d; ++i) {
      const bool one = philox_uniform(key, static_cast<uint64_t>(c), kInitPhase,
                                      static_cast<uint32_t>(i)) < 0.5f;
      mismatches += states[static_cast<size_t>(c * d + i)] != static_cast<uint8_t>(one);
      ones += one;
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(ones, 0);
  EXPECT_LT(ones, chains * d);
}

// `sample`'s blocked run (host/gibbs_blocks.hpp) gives the states of one call over all chains, for
// blocks that divide the chains and one that does not, with pieces of any size; after_piece sees
// the chain-steps done grow to all of them, and a throw from it stops the run.
TEST(GibbsBlocks, StatesEqualOneCallAndEveryPieceIsReported) {
  const int d = 20;
  const Params p = test::random_params(d, 7, 0.5f, 6, /*visible_bias=*/true);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  const int64_t chains = 3 * cpu::kSampleTile + 88, steps = 12;
  const std::vector<uint8_t> start = random_initial_states(chains, d, 8);
  std::vector<uint8_t> whole = start;
  backend->gibbs(whole, chains, 9, 0, steps);
  for (const int64_t block : {cpu::kSampleTile, 2 * cpu::kSampleTile, chains, 4 * chains}) {
    std::vector<uint8_t> blocked = start;
    std::vector<int64_t> done_after_piece;
    // piece_seconds 0: every piece is one step (PieceSizer never grows a piece past its target).
    gibbs_in_blocks(*backend, blocked, chains, d, 9, steps,
                    GibbsBlocks{.block_chains = block, .piece_seconds = 0.0},
                    [&](int64_t done) { done_after_piece.push_back(done); });
    EXPECT_EQ(blocked, whole) << "block " << block;
    const int64_t n_blocks = (chains + block - 1) / block;
    ASSERT_EQ(done_after_piece.size(), static_cast<size_t>(n_blocks * steps)) << "block " << block;
    EXPECT_TRUE(std::is_sorted(done_after_piece.begin(), done_after_piece.end()));
    EXPECT_EQ(done_after_piece.back(), chains * steps) << "block " << block;
  }
  // A throw after the first piece: one step of the first block is all that ran.
  std::vector<uint8_t> stopped = start;
  EXPECT_THROW(gibbs_in_blocks(*backend, stopped, chains, d, 9, steps,
                               GibbsBlocks{.block_chains = cpu::kSampleTile, .piece_seconds = 0.0},
                               [](int64_t) { throw std::runtime_error("stop"); }),
               std::runtime_error);
  std::vector<uint8_t> one_step = start;
  backend->gibbs(std::span<uint8_t>(one_step).first(static_cast<size_t>(cpu::kSampleTile * d)),
                 cpu::kSampleTile, 9, 0, 1);
  EXPECT_EQ(stopped, one_step);
  // The blocks `sample` uses: 28672 chains at d 784, H 100; multiples of 4096, at least 4096; at
  // most 2^26 units (81920 chains at d 784) for a small H.
  EXPECT_EQ(sample_block_chains(784, 100), 28672);
  EXPECT_EQ(sample_block_chains(784, 100000), 4096);
  EXPECT_EQ(sample_block_chains(784, 500) % 4096, 0);
  EXPECT_EQ(sample_block_chains(784, 1), 81920);
  EXPECT_EQ(sample_block_chains(100000, 1), 4096);
}

// The single-sample recipe's choice of one thread or two follows measured speed: on an idle
// machine (two threads 20 us an iteration, one 35) it runs two; when another job takes the second
// core (two 150 us) it moves to one after the first slow call, and retries two ever more rarely
// (16, 32, ... up to 256 calls apart); when the job ends it is back on two within 256 calls.
TEST(ThreadChoice, FollowsTheFasterModeAsTheLoadComesAndGoes) {
  ThreadChoice choice;
  double two_cost = 20e-6;
  const double one_cost = 35e-6;
  const auto run_calls = [&](int calls) {
    int on_two = 0;
    for (int c = 0; c < calls; ++c) {
      const bool two = choice.two_threads();
      on_two += two;
      choice.took(two, 1000, 1000 * (two ? two_cost : one_cost));
    }
    return on_two;
  };
  EXPECT_TRUE(choice.two_threads());  // untimed: two threads first
  EXPECT_EQ(run_calls(2), 1);         // then one thread, to time it
  // Idle: two threads, but for a retry of one every so often (16, 32, ... calls apart).
  EXPECT_GE(run_calls(1000), 1000 - 8);

  two_cost = 150e-6;  // another job takes the second core
  const int slow_calls = run_calls(2000);
  // The first call on two threads shows it; then one retry at 16 calls, 32, 64, 128, 256, 256...:
  // at most 1 + 5 + 2000 / 256 calls on the slow mode.
  EXPECT_LE(slow_calls, 1 + 5 + 2000 / ThreadChoice::kMaxRetryCalls + 1);
  EXPECT_GE(slow_calls, 2);

  two_cost = 20e-6;  // the job ends
  int calls_until_two = 0;
  while (!choice.two_threads() && calls_until_two <= ThreadChoice::kMaxRetryCalls + 1) {
    choice.took(false, 1000, 1000 * one_cost);
    ++calls_until_two;
  }
  EXPECT_LE(calls_until_two, ThreadChoice::kMaxRetryCalls);
  EXPECT_GE(run_calls(100), 100 - 2);  // back on two; retries of one 16, then 32 calls apart
}

// The number of threads of this process (Linux: /proc/self/status), 0 when unreadable.
int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return 0;
}

// The device run.json and eval report names the threads the CPU backend's parallel work uses:
// RBM_CPU_THREADS when set (and says so), else the hardware's; the vector instructions of its
// kernels: RBM_CPU_SIMD when set (and says so), else the best this CPU runs; and OpenBLAS's
// kernels.
TEST(CpuBackend, DeviceDescriptionNamesTheThreadsUsed) {
  const std::string best = cpu::simd_name(cpu::simd());
  const std::string kernels = std::string(", OpenBLAS ") + openblas_get_corename() + " kernels";
  {
    const test::ScopedEnv env("RBM_CPU_THREADS", "1");
    EXPECT_EQ(make_cpu_backend()->device_description(),
              "CPU, 1 thread (RBM_CPU_THREADS), " + best + kernels);
  }
  {
    const test::ScopedEnv env("RBM_CPU_THREADS", "3");
    EXPECT_EQ(make_cpu_backend()->device_description(),
              "CPU, 3 threads (RBM_CPU_THREADS), " + best + kernels);
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string threads =
      "CPU, " + std::to_string(cores) + (cores == 1 ? " thread" : " threads");
  EXPECT_EQ(make_cpu_backend()->device_description(), threads + ", " + best + kernels);
  // With RBM_CPU_SIMD a new process starts on its choice, and says why (rbm_cpu's run.json:
  // Cli.RbmCpuSimdChoosesTheInstructionsAndTrainsTheSameModel); set_simd's choice is not the
  // environment's.
  if (cpu::simd_usable(cpu::Simd::avx2)) {
    const ScopedSimd chosen(cpu::Simd::avx2);
    EXPECT_EQ(make_cpu_backend()->device_description(), threads + ", AVX2" + kernels);
  }
}

// RBM_CPU_SIMD chooses the kernels' instructions at start-up: each usable one by its name; a
// name it does not know, or one this CPU does not run, is an InputError that names the variable.
TEST(CpuBackend, RbmCpuSimdChoosesTheInstructions) {
  for (const auto& [name, simd] :
       {std::pair{"avx2", cpu::Simd::avx2}, std::pair{"avx512", cpu::Simd::avx512}}) {
    const test::ScopedEnv env("RBM_CPU_SIMD", name);
    if (cpu::simd_usable(simd)) {
      EXPECT_EQ(cpu::forced_simd(), simd) << name;
      EXPECT_NO_THROW(make_cpu_backend()) << name;
    } else {
      EXPECT_THROW(make_cpu_backend(), InputError) << name;
    }
  }
  for (const char* bad : {"AVX2", "avx", "scalar", " avx2", "avx512f"}) {
    const test::ScopedEnv env("RBM_CPU_SIMD", bad);
    try {
      make_cpu_backend();
      ADD_FAILURE() << "RBM_CPU_SIMD='" << bad << "' was taken";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("RBM_CPU_SIMD must be avx2 or avx512 (got '" +
                                           std::string(bad) + "')"),
                std::string::npos)
          << e.what();
    }
  }
  const test::ScopedEnv unset("RBM_CPU_SIMD", "");
  EXPECT_EQ(cpu::forced_simd(), std::nullopt);
}

// parallel_for and parallel_pieces visit every index of [0, n) once on any number of threads,
// fewer indices than threads included (the GPU tests' double references split their runs with
// parallel_for: 8 AIS runs on a 16-core device).
TEST(CpuBackend, ParallelLoopsVisitEveryIndexOnceOnAnyThreads) {
  for (const char* threads : {"1", "2", "3", "16", "64"}) {
    const test::ScopedEnv env("RBM_CPU_THREADS", threads);
    for (int64_t n = 0; n <= 70; ++n) {
      SCOPED_TRACE(std::string("RBM_CPU_THREADS=") + threads + ", n = " + std::to_string(n));
      std::vector<std::atomic<int>> for_visits(static_cast<size_t>(n));
      parallel_for(n, [&](int64_t, int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) ++for_visits[static_cast<size_t>(i)];
      });
      std::vector<std::atomic<int>> piece_visits(static_cast<size_t>(n));
      parallel_pieces(n, 3, [&](int64_t, int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) ++piece_visits[static_cast<size_t>(i)];
      });
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(for_visits[static_cast<size_t>(i)], 1) << "parallel_for, index " << i;
        EXPECT_EQ(piece_visits[static_cast<size_t>(i)], 1) << "parallel_pieces, index " << i;
      }
    }
  }
}

// RBM_CPU_THREADS sets the threads of the evaluation's parallel loops too (parallel_for: the
// workers it starts), and their results are the same bit for bit on any number of threads: exact
// log Z (2^16 binary and 3^10 ternary states, 16 and 15 pieces of kExactStatesPerLook, both
// sums), the pseudo-log-likelihood (its pixels' sums) and AIS's log weights. Split per thread,
// the sums of exact log Z and the PLL would be added up in other groupings on 1 and 3 threads.
TEST(CpuBackend, EvaluationUsesRbmCpuThreadsAndGivesTheSameResultOnAny) {
  const auto workers_started = [] {
    std::atomic<int64_t> most{0};
    parallel_for(100, [&](int64_t worker, int64_t, int64_t) {
      int64_t seen = most.load();
      while (seen < worker + 1 && !most.compare_exchange_weak(seen, worker + 1)) {
      }
    });
    return most.load();
  };
  const Dataset images = test::patterned_images(64, 300, 3);
  struct Results {
    std::vector<double> log_z;
    double pll = 0.0;
    std::vector<double> ais_log_weights;
  };
  const auto evaluate = [&](const char* threads) {
    const test::ScopedEnv env("RBM_CPU_THREADS", threads);
    EXPECT_EQ(workers_started(), std::atoi(threads)) << "RBM_CPU_THREADS=" << threads;
    Results results;
    for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
      Params p = test::random_params(64, type == HiddenType::ternary ? 10 : 16, 0.3f, 8, true);
      p.hidden_type = type;
      for (const LogZSum sum : {LogZSum::products, LogZSum::softplus}) {
        results.log_z.push_back(exact_log_partition(p, sum));
      }
    }
    const Params p = test::random_params(64, 24, 0.3f, 7, true);
    results.pll = mean_pseudo_log_likelihood(p, images);
    AisRequest request;
    request.base_bias.assign(64, 0.0f);
    request.betas = ais_betas(40);
    request.runs = 6;
    request.seed = 5;
    results.ais_log_weights = ais_cpu(p, request).log_weights;
    return results;
  };
  const Results one = evaluate("1"), three = evaluate("3");
  EXPECT_EQ(one.log_z, three.log_z);
  EXPECT_EQ(one.pll, three.pll);
  EXPECT_EQ(one.ais_log_weights, three.ais_log_weights);
}

// A thread that cannot be started (std::thread throws: no memory, a pids limit) must not leave the
// ones already started running or joinable: run_on_threads joins them and rethrows. The failure
// is made here by the body's copy, which std::thread's constructor makes in the calling thread:
// the third copy throws, so workers 0 and 1 run and worker 2 never starts. Were the started
// threads left joinable, destroying them would call std::terminate.
TEST(CpuThreads, AThreadThatCannotStartJoinsTheStartedOnesAndThrows) {
  struct Body {
    std::atomic<int>* copies;
    std::atomic<int>* ran;
    Body(std::atomic<int>* c, std::atomic<int>* r) : copies(c), ran(r) {}
    Body(const Body& other) : copies(other.copies), ran(other.ran) {
      if (copies->fetch_add(1) + 1 == 3) {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      }
    }
    Body(Body&& other) noexcept : copies(other.copies), ran(other.ran) {}
    void operator()(int64_t) const {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // still running at the throw
      ran->fetch_add(1);
    }
  };
  std::atomic<int> copies{0}, ran{0};
  EXPECT_THROW(run_on_threads(4, Body(&copies, &ran)), std::system_error);
  EXPECT_EQ(copies.load(), 3);
  EXPECT_EQ(ran.load(), 2);  // joined: both had finished when run_on_threads threw
}

// The two-thread single-sample path (train_cd with count >= 256 on a machine with an idle second
// core: two ShardRunners meeting at a SpinBarrier k + 1 times per iteration) against the
// one-thread path, on the reference recipe's shape (784 x 100, CD-3, MNIST training threes).
// README: "The results are bit-identical either way", so every float must be equal. The paths
// are fixed through CpuOptions: by timing, the threaded path would run only when the test machine
// happens to be idle. Bugs this fails: a missing or misplaced barrier (shard 0 combining shard 1's
// partial sums of W'x before they are written, or while the next layer overwrites them), the
// partial sums added in an order that depends on which thread arrives first, a shard's row
// updates or visible-bias updates lost, or the hidden biases stored from a runner that did not
// update them. The thread count after each call shows that the option really chose the path (the
// worker thread, started by the first threaded call, lives as long as the backend); without that
// check the comparison would pass vacuously if the option stopped working. RBM_CPU_THREADS=1
// keeps the timed choice on one thread: no worker starts.
void expect_two_threads_equal_one(const Recipe& recipe) {
  constexpr int64_t kIterations = 300;  // >= 256, the threaded path's minimum call
  const Dataset train = load_mnist(RBM_MNIST_DIR, 3, Split::train);
  const Params start = init_params(recipe, train);
  const auto trained = [&](CpuOptions options, const char* threads, int64_t piece,
                           int expect_new_threads) {
    const test::ScopedEnv env("RBM_CPU_THREADS", threads);
    std::unique_ptr<Backend> backend = make_cpu_backend(options);
    backend->stage(train);
    backend->set_params(start);
    const int before = thread_count();
    for (int64_t t = 0; t < kIterations; t += piece) backend->train_cd(recipe, t, piece);
    if (before > 0) {
      EXPECT_EQ(thread_count() - before, expect_new_threads)
          << "recipe_threads " << options.recipe_threads << ", RBM_CPU_THREADS=" << threads
          << ", pieces of " << piece;
    }
    return backend->get_params();
  };
  ASSERT_GT(thread_count(), 0) << "cannot count threads (no /proc/self/status)";
  const Params two = trained(CpuOptions{.recipe_threads = 2}, "", kIterations, 1);
  const Params one = trained(CpuOptions{.recipe_threads = 1}, "", kIterations, 0);
  // Calls under 256 iterations stay on one thread.
  const Params singles = trained(CpuOptions{.recipe_threads = 2}, "", 1, 0);
  const Params timed_one = trained(CpuOptions{}, "1", kIterations, 0);
  for (const Params* other : {&one, &singles, &timed_one}) {
    const char* what = other == &one       ? "one thread"
                       : other == &singles ? "300 one-iteration calls"
                                           : "RBM_CPU_THREADS=1";
    ASSERT_EQ(two.W.size(), other->W.size());
    for (size_t k = 0; k < two.W.size(); ++k) {
      ASSERT_EQ(two.W[k], other->W[k]) << what << ": W[" << k / 100 << "][" << k % 100 << "]";
    }
    EXPECT_EQ(two.b, other->b) << what;
    EXPECT_EQ(two.a, other->a) << what;
  }
  EXPECT_NE(two.W, start.W);
  EXPECT_NE(two.b, start.b);
  if (recipe.visible_bias) {
    EXPECT_NE(two.a, start.a);
  }
}

TEST(CpuBackend, TwoThreadsEqualOneThreadBitForBit) { expect_two_threads_equal_one(Recipe{}); }

TEST(CpuBackend, TwoThreadsEqualOneThreadBitForBitWithVisibleBias) {
  Recipe recipe;
  recipe.visible_bias = true;  // a's updates: each shard updates its own rows' biases
  recipe.seed = 6;
  expect_two_threads_equal_one(recipe);
}

TEST(CpuBackend, TwoThreadsEqualOneThreadBitForBitTernary) {
  Recipe recipe;
  recipe.hidden_type = HiddenType::ternary;  // the ternary combine keeps the pre-activations too
  recipe.seed = 7;
  expect_two_threads_equal_one(recipe);
}

// sigmoid_bernoulli draws 1 with probability sigm(pre), where that differs from 1 - sigm(pre)
// (ZeroModelMakesEveryUnitOneWithProbabilityHalf checks only pre = 0, where a draw of u > p passes
// too): each unit's count of ones over 2^16 streams lies within 6 standard deviations of N p
// (normal tail 2e-9 per unit, N p >= 3000; 8 units: < 2e-8), and prob is sigmoid(pre) exactly.
TEST(CpuKernels, SigmoidBernoulliDrawsOnesWithTheSigmoidsProbability) {
  const std::vector<float> pre = {-3.0f, -1.5f, -0.4f, 0.0f, 0.25f, 1.0f, 2.0f, 3.0f};
  const int n = static_cast<int>(pre.size());
  constexpr int kStreams = 1 << 16;
  std::vector<float> prob(n), sample(n);
  std::vector<int64_t> ones(n, 0);
  for (int stream = 0; stream < kStreams; ++stream) {
    cpu::sigmoid_bernoulli(pre.data(), n, philox_key(6, Purpose::sample), stream, 3, prob.data(),
                           sample.data());
    for (int j = 0; j < n; ++j) ones[j] += static_cast<int64_t>(sample[j]);
  }
  for (int j = 0; j < n; ++j) {
    EXPECT_EQ(prob[j], sigmoid(pre[j])) << "pre " << pre[j];
    const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(pre[j])));
    EXPECT_NEAR(static_cast<double>(ones[j]), kStreams * p, 6.0 * std::sqrt(kStreams * p * (1 - p)))
        << "pre " << pre[j];
  }
}

}  // namespace
}  // namespace rbm
