// `sample`'s mixing check (host/mixing.hpp): the split R-hat against a hand computation, its
// threshold against exact F quantiles and against independent draws, the read steps, the chain
// reads of GibbsBlockRun against Backend::gibbs, the verdict on a model whose chains are
// independent draws after one step and on ones whose chains never leave their mode, and `sample`'s
// line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/gibbs_blocks.hpp"
#include "host/mixing.hpp"
#include "host/model_io.hpp"
#include "kernels/philox.h"
#include "tests/cli_runner.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// Two chains of four reads: half-chains [1 2], [3 4], [2 4], [6 8], n = 2, m = 4. Means 1.5, 3.5,
// 3, 7 (grand mean 3.75), so B = 2 / 3 (2.25^2 + 0.25^2 + 0.75^2 + 3.25^2) = 2 / 3 16.25; s^2 are
// 0.5, 0.5, 2, 2, so W = 1.25; R-hat^2 = (W / 2 + B / 2) / W = 29 / 6.
TEST(SplitRHat, MatchesAHandComputation) {
  const std::vector<double> trace = {1, 2, 3, 4, 2, 4, 6, 8};
  EXPECT_NEAR(split_r_hat(trace, 2, 4), std::sqrt(29.0 / 6.0), 1e-14);
}

TEST(SplitRHat, ConstantTracesAreUndefinedAndFrozenChainsInfinite) {
  EXPECT_TRUE(std::isnan(split_r_hat(std::vector<double>(8, 5.0), 2, 4)));
  // Each half-chain constant, the halves different: W = 0 < B.
  EXPECT_EQ(split_r_hat(std::vector<double>{1, 1, 1, 1, 2, 2, 2, 2}, 2, 4), INFINITY);
  // Values that differ in their last bits only: no ratio of rounding errors.
  const double f = -34.657359027997266;
  EXPECT_TRUE(std::isnan(split_r_hat(
      std::vector<double>{f, f, std::nextafter(f, 0.0), f, f, std::nextafter(f, -40.0), f, f}, 2,
      4)));
  EXPECT_THROW(split_r_hat(std::vector<double>(6, 0.0), 2, 3), std::invalid_argument);
  EXPECT_THROW(split_r_hat(std::vector<double>(6, 0.0), 3, 4), std::invalid_argument);
}

// Paulson's approximation against the exact quantiles of F (scipy.stats.f.isf), as R-hat: 4 chains
// of 20 reads (F(7, 72)) within 0.0011, 100 and 256 chains within 1e-5.
TEST(IndependentRHatQuantile, IsCloseToTheExactFQuantile) {
  EXPECT_NEAR(independent_r_hat_quantile(4, 20, kMixingZ), 1.1391565746442494, 1.1e-3);
  EXPECT_NEAR(independent_r_hat_quantile(100, 20, kMixingZ), 1.0180414593954523, 1e-5);
  EXPECT_NEAR(independent_r_hat_quantile(256, 20, kMixingZ), 1.0108508266720386, 1e-5);
  EXPECT_NEAR(independent_r_hat_quantile(100, 20, 2.3263478740408408), 1.0131824449584776, 1e-5);
  // Few values at a large z: no finite quantile.
  EXPECT_EQ(independent_r_hat_quantile(2, 4, 4.753424308822899), INFINITY);
}

// Box-Muller normals from Philox, stream `stream`.
std::vector<double> philox_normals(int64_t count, uint64_t stream) {
  const uint64_t key = philox_key(5, Purpose::sample);
  std::vector<double> out(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    const double u1 = philox_uniform(key, stream, 0, static_cast<uint32_t>(2 * k));
    const double u2 = philox_uniform(key, stream, 0, static_cast<uint32_t>(2 * k + 1));
    out[static_cast<size_t>(k)] =
        std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  return out;
}

// 20000 traces of 16 chains of 20 independent normal draws exceed the quantile at z = 2.326 (1e-2)
// Binomial(20000, 0.01) times: within [135, 272] but with probability below 1e-6 (scipy.stats
// binom: P(X < 135) = 4.0e-7, P(X > 272) = 4.9e-7); the quantile's approximation moves the
// probability by far less than those bounds allow.
TEST(IndependentRHatQuantile, IndependentDrawsExceedItAtItsRate) {
  constexpr int64_t kTraces = 20000, kChains = 16, kReads = 20;
  const double limit = independent_r_hat_quantile(kChains, kReads, 2.3263478740408408);
  int exceeded = 0;
  for (int64_t t = 0; t < kTraces; ++t) {
    const std::vector<double> trace = philox_normals(kChains * kReads, static_cast<uint64_t>(t));
    exceeded += split_r_hat(trace, kChains, kReads) > limit;
  }
  EXPECT_GE(exceeded, 135);
  EXPECT_LE(exceeded, 272);
}

TEST(MixingReadSteps, AreEvenlySpacedInTheSecondHalfAndEndAtTheLastStep) {
  EXPECT_TRUE(mixing_read_steps(0).empty());
  EXPECT_TRUE(mixing_read_steps(kMixingMinSteps - 1).empty());
  EXPECT_EQ(mixing_read_steps(8), (std::vector<int64_t>{5, 6, 7, 8}));
  EXPECT_EQ(mixing_read_steps(9), (std::vector<int64_t>{6, 7, 8, 9}));
  const std::vector<int64_t> thousand = mixing_read_steps(1000);
  ASSERT_EQ(thousand.size(), 20u);
  for (size_t r = 0; r < thousand.size(); ++r) EXPECT_EQ(thousand[r], 525 + 25 * int64_t(r));
  for (int64_t steps = kMixingMinSteps; steps <= 3000; ++steps) {
    const std::vector<int64_t> at = mixing_read_steps(steps);
    ASSERT_GE(at.size(), 4u) << steps;
    ASSERT_LE(at.size(), static_cast<size_t>(kMixingReads)) << steps;
    ASSERT_EQ(at.size() % 2, 0u) << steps;
    ASSERT_GT(at.front(), steps / 2) << steps;
    ASSERT_EQ(at.back(), steps) << steps;
    for (size_t r = 1; r < at.size(); ++r) ASSERT_GT(at[r], at[r - 1]) << steps;
  }
}

// The reads of chains [0, 6) in blocks of 4 (so in two blocks, 4 and 2 of them) are the states
// Backend::gibbs gives those chains from their start to each read step; the pieces that end at
// the reads do not change the chains.
TEST(GibbsBlockRunReads, AreTheChainsStatesAtTheReadSteps) {
  const int d = 30, H = 6;
  const int64_t chains = 10, steps = 40;
  const uint32_t seed = 3;
  const Params p = test::random_params(d, H, 0.5f, 21, true);
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  const std::vector<int64_t> read_steps = {1, 7, 7, 20, 40};

  std::map<std::pair<int64_t, int64_t>, std::vector<uint8_t>> read;  // (step, chain) -> state
  std::vector<uint8_t> states = random_initial_states(chains, d, seed);
  const std::vector<uint8_t> start = states;
  std::vector<int64_t> block_rows;
  {
    GibbsBlockRun run(
        *backend, chains, d, seed, steps, GibbsBlocks{.block_chains = 4, .piece_seconds = 1e9}, {},
        ChainReads{
            .chains = 6,
            .steps = read_steps,
            .at_step = [&](int64_t step, int64_t first_chain, std::span<const uint8_t> rows) {
              const int64_t n = static_cast<int64_t>(rows.size()) / d;
              if (step == 40) block_rows.push_back(n);
              for (int64_t c = 0; c < n; ++c) {
                auto& slot = read[{step, first_chain + c}];
                EXPECT_TRUE(slot.empty()) << "read twice: " << step;
                slot.assign(rows.begin() + c * d, rows.begin() + (c + 1) * d);
              }
            }});
    while (!run.finished()) {
      run.run_next(std::span(states).subspan(static_cast<size_t>(run.next_first()) * d,
                                             static_cast<size_t>(run.next_count()) * d));
    }
  }
  EXPECT_EQ(block_rows, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(read.size(), 4u * 6u);
  for (const int64_t step : {1, 7, 20, 40}) {
    std::vector<uint8_t> want = start;
    backend->gibbs(want, chains, seed, 0, step);
    for (int64_t c = 0; c < 6; ++c) {
      const std::vector<uint8_t> chain(want.begin() + c * d, want.begin() + (c + 1) * d);
      EXPECT_EQ((read[std::pair{step, c}]), chain) << "step " << step << ", chain " << c;
    }
    if (step == steps) {
      EXPECT_EQ(states, want);
    }
  }
  EXPECT_THROW(GibbsBlockRun(*backend, chains, d, seed, steps, GibbsBlocks{.block_chains = 4}, {},
                             ChainReads{.chains = 6, .steps = {3, 41}, .at_step = {}}),
               std::invalid_argument);
}

// Runs `chains` chains of `steps` steps from random starts on the CPU backend, tracing them as
// `sample` does.
MixingTrace traced_run(const Params& p, int64_t chains, int64_t steps, uint32_t seed) {
  const std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  MixingTrace mixing(chains, steps);
  std::vector<uint8_t> states = random_initial_states(chains, p.visible, seed);
  GibbsBlockRun run(
      *backend, chains, p.visible, seed, steps,
      GibbsBlocks{.block_chains = sample_block_chains(p.visible, p.hidden)}, {},
      ChainReads{.chains = mixing.traced_chains(),
                 .steps = mixing.read_steps(),
                 .at_step = [&](int64_t step, int64_t first_chain, std::span<const uint8_t> rows) {
                   mixing.record(p, step, first_chain, rows);
                 }});
  while (!run.finished()) {
    run.run_next(std::span(states).subspan(static_cast<size_t>(run.next_first()) * p.visible,
                                           static_cast<size_t>(run.next_count()) * p.visible));
  }
  return mixing;
}

// With W = 0 every visible state after a step is an independent draw from the model, and F(x) =
// -a'x - sum_j softplus(b_j) a weighted sum of 50 independent bits, close to normal: the split
// R-hat of 256 chains' 20 reads stays under the quantile that independent normal draws exceed
// with probability 1e-6 (z = 4.753).
TEST(MixingTrace, ChainsOfIndependentDrawsShowNoSignOfPoorMixing) {
  const MixingTrace mixing = traced_run(test::independent_pixels_model(), 300, 200, 4);
  ASSERT_TRUE(mixing.judged());
  EXPECT_EQ(mixing.traced_chains(), kMixingChains);
  EXPECT_LT(mixing.r_hat(), independent_r_hat_quantile(kMixingChains, kMixingReads, 4.7534));
  EXPECT_EQ(mixing.threshold(), independent_r_hat_quantile(kMixingChains, kMixingReads, kMixingZ));
}

// With b = -60 the modes' free energies differ (F = 60 - 4 s with s pixels on and h = 1: -18 at
// s = 19.6; 4 s = 1.4 at s = 0.36 with h = 0), and random starts put a chain with at most 7 pixels
// on (probability 0.13) in the h = 0 mode: 256 chains have chains in both modes except with
// probability 0.87^256 < 1e-15, and the chains differ far more than each changes.
TEST(MixingTrace, ChainsStuckInTwoModesHaveNotMixed) {
  const MixingTrace mixing = traced_run(test::two_mode_model(-60.0f), 256, 500, 1);
  ASSERT_TRUE(mixing.judged());
  EXPECT_GT(mixing.r_hat(), 3.0);
  EXPECT_GT(mixing.r_hat(), mixing.threshold());
}

// What the check cannot see (host/mixing.hpp, README): with b = -80 the two modes have the same
// distribution of free energies, F(x) = 4 s - softplus(8 s - 80) being the same at s and 20 - s
// (softplus(t) - softplus(-t) = t) and the modes' s mirror images (Binomial(20, 0.982) and
// Binomial(20, 0.018)), so chains split between them, never moving from one to the other, look
// mixed by F.
TEST(MixingTrace, ModesOfOneFreeEnergyAreNotTold) {
  const MixingTrace mixing = traced_run(test::two_mode_model(-80.0f), 256, 500, 1);
  ASSERT_TRUE(mixing.judged());
  EXPECT_LT(mixing.r_hat(), mixing.threshold());
}

TEST(MixingTrace, StuckChainsAreInfinite) {
  const MixingTrace mixing = traced_run(test::frozen_model(), 256, 100, 1);
  EXPECT_EQ(mixing.r_hat(), INFINITY);
}

TEST(MixingTrace, OneFreeEnergyForEveryStateIsNotJudged) {
  EXPECT_TRUE(std::isnan(traced_run(test::flat_model(), 300, 100, 1).r_hat()));
}

TEST(MixingTrace, FewChainsOrStepsAreNotJudged) {
  const Params p = test::random_params(10, 2, 1.0f, 8, true);
  EXPECT_FALSE(MixingTrace(kMixingMinChains - 1, 1000).judged());
  EXPECT_FALSE(MixingTrace(1000, kMixingMinSteps - 1).judged());
  EXPECT_EQ(MixingTrace(kMixingMinChains - 1, 1000).traced_chains(), 0);
  const MixingTrace incomplete(10, 100);
  EXPECT_THROW(static_cast<void>(incomplete.r_hat()), std::logic_error);
  MixingTrace mixing(10, 100);
  const std::vector<uint8_t> rows(static_cast<size_t>(10) * 10, 0);
  EXPECT_THROW(mixing.record(p, 51, 0, rows), std::invalid_argument);   // not a read step
  EXPECT_THROW(mixing.record(p, 100, 1, rows), std::invalid_argument);  // chain 10 is not traced
}

// The models of known mixing (tests/tiny_model.hpp) as model directories dir/independent,
// dir/two_modes, dir/frozen and dir/flat.
void write_mixing_models(const std::filesystem::path& dir) {
  for (const auto& [name, params] : {std::pair{"independent", test::independent_pixels_model()},
                                     {"two_modes", test::two_mode_model(-60.0f)},
                                     {"frozen", test::frozen_model()},
                                     {"flat", test::flat_model()}}) {
    std::filesystem::create_directories(dir / name);
    write_model(dir / name, params);
  }
}

// `sample` prints the check's line after the one on what was sampled: the value this file's
// in-process run of the same chains gives, and its verdict; a note when the chains have not mixed;
// "not judged" with too few chains or steps; nothing without steps.
TEST(SampleCli, SaysWhetherTheChainsMixed) {
  const test::TempDir dir;
  write_mixing_models(dir.path());
  const Params independent = test::independent_pixels_model();
  // The line after the first ("sampled ...") of `sample MODEL --chains N --steps K` (exit code
  // 0), the first without steps, or "" when it fails.
  const auto mixing_line = [&](const std::string& model, const std::string& chains,
                               const std::string& steps) {
    const test::CommandResult r =
        test::run_command(RBM_CPU_EXE, {"sample", (dir / model).string(), "--chains", chains,
                                        "--steps", steps, "--out", (dir / "s.npy").string()});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    if (r.exit_code != 0) return std::string();
    return steps == "0" ? r.output : r.output.substr(r.output.find('\n') + 1);
  };
  char value[32];
  std::snprintf(value, sizeof value, "%.4f", traced_run(independent, 300, 200, 1).r_hat());
  const std::string what = "the free energy's split R-hat over 20 reads of steps ";
  const struct {
    const char *model, *chains, *steps;
    std::string starts;
  } cases[] = {
      {"independent", "300", "200",
       "mixing: " + what + "105..200 of chains 0..255 is " + value + ", not above the "},
      {"two_modes", "256", "500",
       "note: the chains have not mixed: " + what + "263..500 of chains 0..255 is "},
      {"frozen", "256", "100",
       "note: the chains have not mixed: " + what +
           "53..100 of chains 0..255 is inf: each chain kept one free energy"},
      {"flat", "300", "100",
       "mixing: not judged: " + what +
           "53..100 of chains 0..255 is undefined, every read giving the same free energy (to 9 "
           "digits)\n"},
      {"independent", "3", "100",
       "mixing: not judged (the free energy's split R-hat needs 4 chains and 8 steps)\n"},
  };
  for (const auto& c : cases) {
    const std::string line = mixing_line(c.model, c.chains, c.steps);
    EXPECT_EQ(line.rfind(c.starts, 0), 0u)
        << c.model << " " << c.chains << " " << c.steps << ": " << line;
  }
}

// --json: one object with what the text says: the mixing check's verdict, R-hat (the in-process
// value, exactly) and threshold, null where the text has no number; the notes; the start images.
TEST(SampleCli, JsonHoldsTheVerdictAndTheNumbers) {
  const test::TempDir dir;
  write_mixing_models(dir.path());
  const auto sample_json = [&](const std::string& model, const std::string& chains,
                               const std::string& steps) {
    const test::CommandResult r = test::run_command(
        RBM_CPU_EXE, {"sample", (dir / model).string(), "--chains", chains, "--steps", steps,
                      "--out", (dir / "s.npy").string(), "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // The object starts a line: a run slow enough (a sanitizer's) puts progress lines (stderr)
    // before it.
    const size_t start = r.output.starts_with("{") ? 0 : r.output.find("\n{");
    return r.exit_code == 0 ? nlohmann::json::parse(r.output.substr(start)) : nlohmann::json();
  };
  nlohmann::json out = sample_json("independent", "300", "200");
  EXPECT_EQ(out["chains"], 300);
  EXPECT_EQ(out["steps"], 200);
  EXPECT_EQ(out["out"], (dir / "s.npy").string());
  EXPECT_EQ(out["start_images"], nullptr);
  EXPECT_EQ(out["notes"], nlohmann::json::array());
  const nlohmann::json& mixing = out["mixing"];
  EXPECT_EQ(mixing["verdict"], "mixed");
  EXPECT_EQ(mixing["r_hat"].get<double>(),
            traced_run(test::independent_pixels_model(), 300, 200, 1).r_hat());
  EXPECT_EQ(mixing["threshold"].get<double>(),
            independent_r_hat_quantile(kMixingChains, kMixingReads, kMixingZ));
  EXPECT_EQ(mixing["read_steps"], nlohmann::json::array({105, 200}));
  EXPECT_EQ(mixing["reads"], kMixingReads);
  EXPECT_EQ(mixing["traced_chains"], kMixingChains);
  EXPECT_EQ(mixing["text"].get<std::string>().rfind("mixing: the free energy's split R-hat", 0),
            0u);

  out = sample_json("frozen", "256", "100");
  EXPECT_EQ(out["mixing"]["verdict"], "stuck");
  EXPECT_EQ(out["mixing"]["r_hat"], nullptr);  // inf, which JSON cannot hold
  // The text's note, without its "note: ", is the first of the notes.
  ASSERT_EQ(out["notes"].size(), 1u) << out["notes"];
  EXPECT_EQ("note: " + out["notes"][0].get<std::string>(), out["mixing"]["text"]);
  out = sample_json("flat", "300", "100");
  EXPECT_EQ(out["mixing"]["verdict"], "undefined");
  EXPECT_EQ(out["mixing"]["r_hat"], nullptr);
  EXPECT_EQ(out["notes"].size(), 1u) << out["notes"];  // no visible biases, random starts
  out = sample_json("independent", "3", "100");
  EXPECT_EQ(out["mixing"]["verdict"], "not judged");
  EXPECT_EQ(out["mixing"]["read_steps"], nullptr);
  out = sample_json("independent", "300", "0");
  EXPECT_EQ(out["mixing"]["verdict"], "none");
  EXPECT_EQ(out["mixing"]["text"], nullptr);
}

}  // namespace
}  // namespace rbm
