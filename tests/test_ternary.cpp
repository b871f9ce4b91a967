// Ternary hidden units (issue 7 part 1, design.md): h_j in {-1, 0, 1}, p(x) proportional to
// exp(a'x) prod_j (1 + 2 cosh(w_j'x + b_j)). Here: the marginal (free energy) and the exact 3^H
// log Z against brute-force enumeration over (x, h); the exact gradient with G(t) against finite
// differences of the exact log-likelihood; extreme |t|; the model directory's hidden type; and the
// command line. The ternary CD, minibatch, sampler and AIS checks sit beside their binary twins
// and share their code: tests/test_cpu_backend.cpp, test_gradient.cpp, test_minibatch.cpp and
// test_ais.cpp.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "host/hidden_units.hpp"
#include "host/model_io.hpp"
#include "host/numeric.hpp"
#include "tests/cli_runner.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

Params ternary(Params p) {
  p.hidden_type = HiddenType::ternary;
  return p;
}

// log sum_h exp(x'Wh + b'h + a'x) over all h in {-1, 0, 1}^H (h_j = base-3 digit j of the state,
// minus 1), for one x, in long double: the definition the free energy must match.
long double brute_force_log_marginal(const Params& p, const uint8_t* x) {
  const int d = p.visible, H = p.hidden;
  int64_t n_states = 1;
  for (int j = 0; j < H; ++j) n_states *= 3;
  long double total = 0.0L;
  for (int64_t s = 0; s < n_states; ++s) {
    long double energy = 0.0L;
    int64_t rest = s;
    for (int j = 0; j < H; ++j, rest /= 3) {
      const int h = static_cast<int>(rest % 3) - 1;
      energy += h * static_cast<long double>(p.b[j]);
      for (int i = 0; i < d; ++i) energy += x[i] ? h * static_cast<long double>(p.W[i * H + j]) : 0;
    }
    for (int i = 0; i < d && p.has_visible_bias(); ++i) energy += x[i] ? p.a[i] : 0.0f;
    total += std::exp(energy);
  }
  return std::log(total);
}

// x_i = bit i of s.
std::vector<uint8_t> bits(uint32_t s, int d) {
  std::vector<uint8_t> x(static_cast<size_t>(d));
  for (int i = 0; i < d; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
  return x;
}

// log sum over all x of exp(-F(x)).
double log_partition_over_visible(const Params& p) {
  LogSumExp sum;
  for (uint32_t s = 0; s < (1u << p.visible); ++s)
    sum.add(-free_energy(p, bits(s, p.visible).data()));
  return sum.value();
}

// The issue's marginal: -F(x) = a'x + sum_j log(1 + 2 cosh(w_j'x + b_j)) is the log of the sum
// over the 3^H hidden states, and exact log Z (3^H Gray-code walk) is the sum over all (x, h);
// with weights of scale 1 and 6 (pre-activations up to ~40, where a naive 2 cosh would still do
// but the form must not lose digits).
TEST(Ternary, FreeEnergyAndLogZMatchBruteForceOverXAndH) {
  for (const float scale : {1.0f, 6.0f}) {
    for (const bool visible_bias : {false, true}) {
      SCOPED_TRACE("scale " + std::to_string(scale) + (visible_bias ? ", a" : ", no a"));
      const Params p = ternary(test::random_params(5, 3, scale, 11, visible_bias));
      long double log_z = -std::numeric_limits<long double>::infinity();
      for (uint32_t s = 0; s < 32; ++s) {
        const std::vector<uint8_t> x = bits(s, 5);
        const long double want = brute_force_log_marginal(p, x.data());
        EXPECT_NEAR(-free_energy(p, x.data()), static_cast<double>(want),
                    1e-12 * std::max(1.0, std::fabs(static_cast<double>(want))))
            << "x = " << s;
        const long double hi = std::max(log_z, want);
        log_z = hi + std::log(std::exp(log_z - hi) + std::exp(want - hi));
      }
      EXPECT_NEAR(exact_log_partition(p), static_cast<double>(log_z),
                  1e-12 * std::fabs(static_cast<double>(log_z)));
      double total = 0.0;
      for (const double q : visible_distribution(p)) total += q;
      EXPECT_NEAR(total, 1.0, 1e-12);
    }
  }
}

// H = 11 (177147 states) splits the Gray-code walk across threads; d = 8 lets us sum over x.
TEST(Ternary, ExactLogZAcrossThreadsMatchesVisibleEnumeration) {
  for (const bool visible_bias : {false, true}) {
    const Params p = ternary(test::random_params(8, 11, 0.5f, 12, visible_bias));
    EXPECT_NEAR(exact_log_partition(p), log_partition_over_visible(p), 1e-9);
  }
  Params too_big = ternary(test::random_params(2, kMaxExactTernaryHidden + 1, 0.5f, 13, false));
  EXPECT_THROW(exact_log_partition(too_big), std::invalid_argument);
}

// The log-likelihood gradient (E_data - E_model of x G(t)', G(t), x) against central differences
// of the exact mean log p(x) = -mean F(x) - log Z, both in double (free_energy sums in double, so
// the differences see no float rounding beyond the parameters' own). With steps of 1e-3 the
// truncation error is ~1e-7; 2e-6 leaves room for that and for the rounding of W +- step.
TEST(Ternary, ExactGradientMatchesFiniteDifferencesOfTheLogLikelihood) {
  const Params p = ternary(test::random_params(6, 3, 0.8f, 71, /*visible_bias=*/true));
  const Dataset data = test::bit_images(6, {0b000111, 0b111000, 0b101010, 0b110011, 0b001100});
  const auto log_likelihood = [&](const Params& q) {
    double sum = 0.0;
    for (int64_t r = 0; r < data.rows; ++r) sum -= free_energy(q, data.row(r));
    return sum / static_cast<double>(data.rows) - exact_log_partition(q);
  };
  const Params grad = exact_gradient(p, data);
  const auto check = [&](std::vector<float> Params::*field, const std::vector<float>& want,
                         const char* name) {
    for (size_t q = 0; q < want.size(); ++q) {
      Params plus = p, minus = p;
      (plus.*field)[q] += 1e-3f;
      (minus.*field)[q] -= 1e-3f;
      const double step =
          static_cast<double>((plus.*field)[q]) - static_cast<double>((minus.*field)[q]);
      const double fd = (log_likelihood(plus) - log_likelihood(minus)) / step;
      EXPECT_NEAR(want[q], fd, 2e-6) << name << "[" << q << "]";
    }
  };
  check(&Params::W, grad.W, "W");
  check(&Params::b, grad.b, "b");
  check(&Params::a, grad.a, "a");
  // The same differences tell G from sigm: the binary model's gradient is far from them.
  Params binary = p;
  binary.hidden_type = HiddenType::binary;
  const Params binary_grad = exact_gradient(binary, data);
  double largest = 0.0;
  for (size_t q = 0; q < grad.W.size(); ++q) {
    largest = std::max(largest, std::fabs(static_cast<double>(grad.W[q]) - binary_grad.W[q]));
  }
  EXPECT_GT(largest, 1e-2);
}

// The batch metrics (mean_free_energy, reconstruction_error: float sgemm, then G in float) against
// a reference in double from the issue's equations, written here without the library's
// functions:
//   F(x) = -a'x - sum_j log(1 + 2 cosh t_j),  t = W'x + b
//   recon(x) = mean_i (x_i - sigm(W_i m + a_i))^2,  m_j = G(t_j) = 2 sinh t_j / (1 + 2 cosh t_j).
// Tolerances, from the float roundings with u = 2^-24 (each bound is a worst case, any summation
// order: a float sum of n terms errs by at most (n - 1) u sum |terms|, to first order):
//  - t_j in float errs by dt_j <= (n_x + 1) u S_j, n_x the pixels on, S_j = |b_j| + sum_i x_i
//  |W_ij|;
//  - F: d log(1 + 2 cosh t) / dt = G(t), |G| < 1, so |dF| <= sum_j dt_j (plus double roundings,
//    1e-12 relative);
//  - m_j: |G'| <= G'(0) = 2/3, and float G itself (expf, expm1f, a division) adds 8u:
//    dm_j <= (2/3) dt_j + 8u;
//  - v_i = W_i m + a_i in float: dv_i <= sum_j |W_ij| dm_j + (H + 1) u (|a_i| + sum_j |W_ij m_j|);
//  - sigm's slope is at most 1/4, float sigmoid adds 8u, and |d (x - s)^2 / ds| = 2|x - s| <= 2:
//    the pixel's term errs by at most 2 (dv_i / 4 + 8u).
// sigm in the place of G moves the hidden means by ~0.1 to 1 and the reconstruction error by 50
// to 1000 times its bound here; the test checks that it lies outside.
struct TernaryMetricsReference {
  double mean_free_energy = 0.0, free_energy_bound = 0.0;
  double reconstruction_error = 0.0, reconstruction_bound = 0.0;
};

TernaryMetricsReference ternary_metrics_reference(const Params& p, const Dataset& images,
                                                  bool sigm_for_g = false) {
  const int d = p.visible, H = p.hidden;
  const double u = FLT_EPSILON / 2.0;
  const auto a = [&](int i) { return p.has_visible_bias() ? double{p.a[i]} : 0.0; };
  const auto w = [&](int i, int j) { return double{p.W[static_cast<size_t>(i) * H + j]}; };
  TernaryMetricsReference ref;
  for (int64_t r = 0; r < images.rows; ++r) {
    const uint8_t* x = images.row(r);
    int on = 0;
    for (int i = 0; i < d; ++i) on += x[i] ? 1 : 0;
    std::vector<double> m(static_cast<size_t>(H)), dm(m.size());  // (H) G(t), its float error
    double f = 0.0;
    for (int i = 0; i < d; ++i) f -= x[i] ? a(i) : 0.0;
    for (int j = 0; j < H; ++j) {
      double t = p.b[j], magnitude = std::fabs(p.b[j]);
      for (int i = 0; i < d; ++i) {
        if (x[i]) t += w(i, j), magnitude += std::fabs(w(i, j));
      }
      const double dt = (on + 1) * u * magnitude;
      f -= std::log(1.0 + 2.0 * std::cosh(t));
      ref.free_energy_bound += dt;
      m[j] =
          sigm_for_g ? 1.0 / (1.0 + std::exp(-t)) : 2.0 * std::sinh(t) / (1.0 + 2.0 * std::cosh(t));
      dm[j] = 2.0 / 3.0 * dt + 8.0 * u;
    }
    ref.mean_free_energy += f;
    ref.free_energy_bound += 1e-12 * std::fabs(f);
    for (int i = 0; i < d; ++i) {
      double v = a(i), dv = 0.0, magnitude = std::fabs(a(i));
      for (int j = 0; j < H; ++j) {
        v += w(i, j) * m[j];
        dv += std::fabs(w(i, j)) * dm[j];
        magnitude += std::fabs(w(i, j) * m[j]);
      }
      dv += (H + 1) * u * magnitude;
      const double diff = x[i] - 1.0 / (1.0 + std::exp(-v));
      ref.reconstruction_error += diff * diff;
      ref.reconstruction_bound += 2.0 * (dv / 4.0 + 8.0 * u);
    }
  }
  const double n = static_cast<double>(images.rows);
  ref.mean_free_energy /= n;
  ref.free_energy_bound /= n;
  ref.reconstruction_error /= n * d;
  ref.reconstruction_bound /= n * d;
  return ref;
}

// A tiny model on every 7-pixel image, and the recipe's shape (784 x 20) on 200 MNIST threes,
// where sgemm runs its blocked kernels; with and without visible biases.
TEST(Ternary, BatchMetricsMatchTheEquationsInDouble) {
  std::vector<uint32_t> patterns(128);
  for (uint32_t s = 0; s < 128; ++s) patterns[s] = s;
  const Dataset every_image = test::bit_images(7, patterns);
  Dataset threes = load_mnist(RBM_MNIST_DIR, 3, Split::test);
  threes.rows = 200;
  threes.pixels.resize(static_cast<size_t>(threes.rows) * threes.cols());
  threes.labels.resize(static_cast<size_t>(threes.rows));
  struct Case {
    const Dataset* images;
    float scale;
  };
  for (const Case& c : {Case{&every_image, 1.0f}, Case{&threes, 0.1f}}) {
    for (const bool visible_bias : {false, true}) {
      const Params p = ternary(test::random_params(c.images->cols(), c.images == &threes ? 20 : 4,
                                                   c.scale, visible_bias ? 41 : 42, visible_bias));
      SCOPED_TRACE(::testing::Message() << "d " << p.visible << (visible_bias ? ", a" : ", no a"));
      const Dataset& images = *c.images;
      const TernaryMetricsReference want = ternary_metrics_reference(p, images);
      std::printf("d %d%s: F bound %.2g, recon bound %.2g\n", p.visible, visible_bias ? ", a" : "",
                  want.free_energy_bound, want.reconstruction_bound);
      EXPECT_NEAR(mean_free_energy(p, images), want.mean_free_energy, want.free_energy_bound);
      EXPECT_NEAR(reconstruction_error(p, images), want.reconstruction_error,
                  want.reconstruction_bound);
      // mean_free_energy is the mean of free_energy (double pre-activations): the same bound.
      double mean_of_free_energies = 0.0;
      for (int64_t r = 0; r < images.rows; ++r)
        mean_of_free_energies += free_energy(p, images.row(r));
      mean_of_free_energies /= static_cast<double>(images.rows);
      EXPECT_NEAR(mean_free_energy(p, images), mean_of_free_energies, want.free_energy_bound);
      // The bound tells G from sigm: a reconstruction through sigm(t) lies outside it.
      const TernaryMetricsReference with_sigm = ternary_metrics_reference(p, images, true);
      EXPECT_GT(std::fabs(with_sigm.reconstruction_error - reconstruction_error(p, images)),
                want.reconstruction_bound);
    }
  }
}

// Extreme pre-activations: log(1 + 2 cosh t) and G(t) neither overflow nor lose digits, and every
// computation on a model whose |t| reaches 1e4 stays finite, with the draws all sign(t).
TEST(Ternary, ExtremePreactivations) {
  for (const double t : {1e-12, 1e-3, 0.5, 3.0, 30.0, 100.0, 700.0, 1e4, 1e30}) {
    for (const double s : {t, -t}) {
      const long double ld = s;
      // Long double's cosh overflows past ~11356; there log(1 + 2 cosh t) = |t| to double
      // precision.
      const long double log_term =
          t < 1e4 ? std::log(1.0L + 2.0L * std::cosh(ld)) : static_cast<long double>(t);
      const long double mean =
          t < 1e4 ? 2.0L * std::sinh(ld) / (1.0L + 2.0L * std::cosh(ld)) : (s > 0 ? 1.0L : -1.0L);
      const double log_want = static_cast<double>(log_term), mean_want = static_cast<double>(mean);
      // A few ulp of the result at every t.
      EXPECT_NEAR(hidden_log_sum<HiddenType::ternary>(s), log_want, 1e-15 * log_want) << s;
      EXPECT_NEAR(hidden_mean<HiddenType::ternary>(s), mean_want, 1e-15 * std::fabs(mean_want))
          << s;
    }
  }
  // AIS's increment at close temperatures: within a few ulp of 1 for small t; for large t it is
  // t1 - t2 (up to e^-50) to a relative 1e-12, where the difference of the two logs would lose
  // all but ~7 digits at t = 1e4.
  for (const double t : {1e-3, 1.0, 50.0, 1e4}) {
    for (const double sign : {1.0, -1.0}) {
      const double t1 = sign * t, t2 = sign * t * (1.0 - 1e-9);
      const double got = log_one_plus_two_cosh_difference(t1, t2);
      if (t < 50.0) {
        const long double want = std::log((1.0L + 2.0L * std::cosh(static_cast<long double>(t1))) /
                                          (1.0L + 2.0L * std::cosh(static_cast<long double>(t2))));
        EXPECT_NEAR(got, static_cast<double>(want), 1e-15) << t1;
      } else {
        const double want = std::fabs(t1) - std::fabs(t2);  // exact (Sterbenz)
        EXPECT_NEAR(got, want, 1e-12 * want) << t1;
      }
    }
  }

  // A model with |W| ~ 1e3..1e4 (|t| up to ~1e4): every number stays finite.
  Params huge = ternary(test::random_params(6, 3, 3000.0f, 81, /*visible_bias=*/true));
  const Dataset data = test::bit_images(6, {0b101101, 0b010011, 0b111000});
  for (uint32_t s = 0; s < 64; ++s)
    EXPECT_TRUE(std::isfinite(free_energy(huge, bits(s, 6).data())));
  // Not only finite: log Z and the PLL against a brute force over every (x, h), 64 x 27 energies
  // a'x + x'Wh + b'h summed by log-sum-exp in long double (no closed form of the hidden sum), to
  // 1e-12 relative (log Z is about 1e4; double's rounding of it is 2e-12 absolute).
  const auto log_sum_exp = [](const std::vector<long double>& terms) {
    long double top = -std::numeric_limits<long double>::infinity(), sum = 0.0L;
    for (const long double t : terms) top = std::max(top, t);
    for (const long double t : terms) sum += std::exp(t - top);
    return top + std::log(sum);
  };
  const auto log_unnormalized = [&](const std::vector<uint8_t>& x) {  // log sum_h e^{-E(x, h)}
    std::vector<long double> terms;
    for (int code = 0; code < 27; ++code) {
      long double energy = 0.0L;
      for (int i = 0; i < 6; ++i) energy += x[i] ? huge.a[i] : 0.0f;
      for (int j = 0, rest = code; j < 3; ++j, rest /= 3) {
        const int h = rest % 3 - 1;
        long double t = huge.b[j];
        for (int i = 0; i < 6; ++i) t += x[i] ? huge.W[i * 3 + j] : 0.0f;
        energy += h * t;
      }
      terms.push_back(energy);
    }
    return log_sum_exp(terms);
  };
  std::vector<long double> all_x;
  for (uint32_t s = 0; s < 64; ++s) all_x.push_back(log_unnormalized(bits(s, 6)));
  const long double log_z = log_sum_exp(all_x);
  EXPECT_NEAR(exact_log_partition(huge), static_cast<double>(log_z),
              1e-12 * static_cast<double>(std::fabs(log_z)));
  long double pll = 0.0L;
  for (int64_t r = 0; r < data.rows; ++r) {
    const std::vector<uint8_t> x(data.row(r), data.row(r) + 6);
    const long double own = log_unnormalized(x);
    for (int i = 0; i < 6; ++i) {
      std::vector<uint8_t> flipped = x;
      flipped[i] ^= 1;
      pll += own - log_sum_exp({own, log_unnormalized(flipped)});
    }
  }
  pll /= static_cast<long double>(data.rows);
  EXPECT_NEAR(mean_pseudo_log_likelihood(huge, data), static_cast<double>(pll),
              1e-12 * static_cast<double>(std::fabs(pll)) + 1e-12);
  EXPECT_TRUE(std::isfinite(reconstruction_error(huge, data)));
  const Params grad = exact_gradient(huge, data);
  EXPECT_TRUE(all_finite(grad));
  AisRequest request;
  request.base_bias.assign(6, 0.0f);
  request.betas = ais_betas(20);
  request.runs = 8;
  for (const double log_w : ais_cpu(huge, request).log_weights) EXPECT_TRUE(std::isfinite(log_w));

  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(data);
  backend->set_params(huge);
  Recipe recipe;
  recipe.lr = 1e-3f;
  backend->train_cd(recipe, 0, 20);
  EXPECT_TRUE(all_finite(backend->get_params()));
  EXPECT_EQ(backend->get_params().hidden_type, HiddenType::ternary);
  std::vector<uint8_t> states(data.pixels.begin(), data.pixels.end());
  backend->gibbs(states, data.rows, 3, 0, 10);
  for (const uint8_t v : states) EXPECT_LE(v, 1);
}

// read_model: the hidden type is run.json's recipe.hidden_type; binary without the file or the
// key; anything else is an InputError naming the file.
TEST(TernaryModelDirectory, ReadModelTakesTheHiddenTypeFromRunJson) {
  const test::TempDir dir;
  const Params p = test::random_params(7, 3, 0.5f, 21, true);
  write_model(dir.path(), p);
  EXPECT_EQ(read_model(dir.path()).hidden_type, HiddenType::binary);
  const std::filesystem::path run = dir / "run.json";
  test::write_bytes(run, R"({"recipe": {"hidden": 3}})");
  EXPECT_EQ(read_model(dir.path()).hidden_type, HiddenType::binary);
  test::write_bytes(run, R"({"recipe": {"hidden_type": "ternary"}})");
  const Params got = read_model(dir.path());
  EXPECT_EQ(got.hidden_type, HiddenType::ternary);
  EXPECT_EQ(got.W, p.W);
  test::write_bytes(run, R"({"recipe": {"hidden_type": "binary"}})");
  EXPECT_EQ(read_model(dir.path()).hidden_type, HiddenType::binary);
  test::write_bytes(run, R"({"recipe": {"hidden_type": "quaternary"}})");
  EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), "recipe.hidden_type", "quaternary");
  test::write_bytes(run, R"({"recipe": {"hidden_type": 3}})");
  EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), "recipe.hidden_type");
  test::write_bytes(run, R"({"recipe": )");
  EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), "not valid JSON");
  // Valid JSON of another shape is refused, not read as recording nothing (binary).
  test::write_bytes(run, "[]");
  EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), "[] is not a run's record");
  test::write_bytes(run, R"("hello")");
  EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), "\"hello\" is not a run's record");
  for (const char* key : {"recipe", "data", "checkpoint"}) {
    test::write_bytes(run, std::string(R"({")") + key + R"(": 5})");
    EXPECT_INPUT_ERROR(read_model(dir.path()), run.string(), std::string(key) + " is 5");
  }
}

test::CommandResult run_cpu(const std::vector<std::string>& args) {
  return test::run_command(RBM_CPU_EXE, args);
}

TEST(TernaryCli, BadHiddenTypeGetsOneLineAndExitCode2) {
  for (const std::string bad : {"quaternary", "Ternary", ""}) {
    const test::CommandResult r = run_cpu({"--hidden-type", bad});
    EXPECT_EQ(r.exit_code, 2) << "'" << bad << "': " << r.output;
    EXPECT_EQ(test::line_count(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("--hidden-type"), std::string::npos) << r.output;
  }
  const test::CommandResult help = run_cpu({"--help"});
  EXPECT_NE(help.output.find("--hidden-type"), std::string::npos);
}

// `eval` takes the type from the model directory: a 784 x 10 ternary model gets the exact 3^10
// log Z of the ternary model, and log p(x) from the ternary free energy.
TEST(TernaryCli, EvalUsesTheModelDirectorysHiddenType) {
  const test::TempDir dir;
  const Params p = ternary(test::random_params(784, 10, 0.1f, 31, false));
  write_model(dir.path(), p);
  test::write_bytes(dir / "run.json", R"({"recipe": {"hidden_type": "ternary"}})");
  const test::CommandResult r =
      run_cpu({"eval", "--model", dir.path().string(), "--data", RBM_MNIST_DIR, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json out = nlohmann::json::parse(r.output);
  const double log_z = exact_log_partition(p);
  EXPECT_EQ(out["hidden_type"], "ternary");
  EXPECT_EQ(out["log_z_method"], "exact");
  EXPECT_NEAR(out["log_z"].get<double>(), log_z, 1e-9);
  const Dataset test_threes = load_mnist(RBM_MNIST_DIR, 3, Split::test);
  const double want = -mean_free_energy(p, test_threes) - log_z;
  EXPECT_NEAR(out["avg_log_p"].get<double>(), want, 1e-6 * std::fabs(want));
  const test::CommandResult text =
      run_cpu({"eval", "--model", dir.path().string(), "--data", RBM_MNIST_DIR});
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("3^10 hidden states"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("ternary"), std::string::npos) << text.output;
}

// A short ternary run, single-sample and PCD: run.json records the type, the model directory
// reads back as ternary, and eval and sample accept it.
TEST(TernaryCli, TrainEvalAndSampleATernaryModel) {
  const test::TempDir dir;
  for (const bool pcd : {false, true}) {
    const std::filesystem::path out = dir / (pcd ? "pcd" : "cd");
    std::vector<std::string> args = {"--data",      RBM_MNIST_DIR, "--hidden-type", "ternary",
                                     "--hidden",    "8",           "--iters",       "400",
                                     "--log-every", "200",         "--out",         out.string()};
    if (pcd) args.insert(args.end(), {"--batch", "20", "--pcd", "--lr", "0.01"});
    const test::CommandResult r = run_cpu(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const nlohmann::json run = nlohmann::json::parse(read_file(out / "run.json"));
    EXPECT_EQ(run["recipe"]["hidden_type"], "ternary");
    const Params params = read_model(out);
    EXPECT_EQ(params.hidden_type, HiddenType::ternary);
    EXPECT_TRUE(all_finite(params));
    const test::CommandResult e =
        run_cpu({"eval", "--model", out.string(), "--data", RBM_MNIST_DIR, "--json"});
    ASSERT_EQ(e.exit_code, 0) << e.output;
    const nlohmann::json report = nlohmann::json::parse(e.output);
    EXPECT_EQ(report["hidden_type"], "ternary");
    EXPECT_NEAR(report["log_z"].get<double>(), exact_log_partition(params), 1e-9);
    const test::CommandResult s = run_cpu({"sample", "--model", out.string(), "--chains", "5",
                                           "--steps", "10", "--out", (out / "s.npy").string()});
    EXPECT_EQ(s.exit_code, 0) << s.output;
    // The type is the run's: --resume keeps it and refuses the flag.
    const test::CommandResult resume =
        run_cpu({"--resume", out.string(), "--hidden-type", "binary"});
    EXPECT_EQ(resume.exit_code, 2) << resume.output;
    EXPECT_EQ(test::line_count(resume.output), 1) << resume.output;
    EXPECT_NE(resume.output.find("--hidden-type"), std::string::npos) << resume.output;
  }
}

}  // namespace
}  // namespace rbm
