// Whether `sample`'s chains have mixed (host/cmd_sample.cpp): the split R-hat of Gelman et al.
// (Bayesian Data Analysis, 3rd ed., section 11.4) of the free energy F(x) of the first chains,
// read at evenly spaced steps of the second half of the run. Chains that have forgotten their
// starts and move over the model's distribution within a fraction of the run give R-hat near 1;
// chains stuck near their starts, or in different modes, give more. Near 1 is necessary, not
// sufficient: chains that all sit in one mode of a model with several agree with each other.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "host/model.hpp"

namespace rbm {

// At most this many chains are traced (the first ones), and at most this many steps read: the
// free energies cost 2 d H flops a chain and read (0.3 GFLOP for 100 chains at d 784, H 100, beside
// the 31 GFLOP of their 1000 steps). More reads would weigh a chain's correlation from read to
// read more: with 100, a trained H 10 model's 256 chains gave 1.018 after 50000 steps, with 16 to
// 32 1.013 or 1.014, with 20 1.014 (and 1.002 after 200000 steps).
inline constexpr int64_t kMixingChains = 256;
inline constexpr int64_t kMixingReads = 20;
// Fewer chains or steps are not judged: 4 chains are 8 half-chains, and 8 steps give 4 reads,
// two to each half.
inline constexpr int64_t kMixingMinChains = 4;
inline constexpr int64_t kMixingMinSteps = 8;
// The verdict's line: R-hat above what independent normal draws exceed with probability 1e-3
// (z below: Phi^-1(1 - 1e-3)): 1.018 for 100 chains of 20 reads, 1.011 for 256. (Vehtari et al.
// 2021, "Rank-normalization, folding, and localization: an improved R-hat", recommend 1.01 for
// their rank-normalized R-hat over many draws; 256 chains' 20 reads cannot tell 1.01 from chance.)
// Free energies that are not normal (skewed, few values) exceed it more often: a reviewer's
// simulation of 256 chains of 20 independent draws, lognormal ones 2.9 times in 1000.
inline constexpr double kMixingZ = 3.090232306167813;

// The steps after which the free energies are read: the largest even number of reads up to
// kMixingReads that the second half (floor(K/2), K] holds, spread evenly over it (gaps that
// differ by one step at most), the last at K;
// none when K < kMixingMinSteps.
std::vector<int64_t> mixing_read_steps(int64_t steps);

// The split R-hat of `trace` ((chains, reads) row-major; reads even, >= 4; chains >= 1): each
// chain cut into its first and second halves, m = 2 chains half-chains of n = reads / 2 values,
//   B = n / (m - 1) sum_j (mean_j - mean)^2,  W = (1 / m) sum_j s_j^2  (s_j^2 over n - 1),
//   R-hat = sqrt(((n - 1) / n W + B / n) / W).
// +inf when W = 0 < B (every half-chain kept one value: stuck chains); NaN when the values differ
// by no more than kMixingSameRelative of the largest |value| (a model whose F is the same for every
// state, W = 0 and a = 0: the half-chains' means, rounded, differ from the values in their last
// bits, and R-hat would be a ratio of rounding errors, 23.8 for an exploratory tester's).
// std::invalid_argument for shapes that do not fit.
inline constexpr double kMixingSameRelative = 1e-9;
double split_r_hat(std::span<const double> trace, int64_t chains, int64_t reads);

// The R-hat that `chains` chains of `reads` independent normal draws exceed with probability
// P(Z > z): B / W is F(m - 1, m (n - 1)) distributed then, and R-hat^2 = (n - 1) / n + (B / W) / n;
// the F quantile by Paulson's approximation (at z = 3.09 within 0.7% of the exact quantile from 4
// chains of 20 reads on, 4.001 for 3.977 at F(7, 72), and closer with more chains; above it with
// fewer reads, 13.4 for 12.4 at F(7, 8): fewer false alarms). +inf where the approximation fails
// (few values at a large z).
double independent_r_hat_quantile(int64_t chains, int64_t reads, double z);

// The trace of one `sample` run: the free energies of its first min(N, kMixingChains) chains at
// mixing_read_steps(K).
class MixingTrace {
 public:
  // `chains` (N) and `steps` (K) of the run.
  MixingTrace(int64_t chains, int64_t steps);

  // Whether there is anything to judge (N >= kMixingMinChains, K >= kMixingMinSteps).
  bool judged() const { return !read_steps_.empty(); }
  int64_t traced_chains() const { return traced_chains_; }
  const std::vector<int64_t>& read_steps() const { return read_steps_; }

  // Records the free energies under `params` (the sampled model; no copy of it is kept, which
  // could double the memory of a large one) of chains [first_chain, first_chain + rows) after step
  // `step`, one of read_steps(): `states` is (rows, d) row-major, 0/1, with first_chain + rows <=
  // traced_chains(). std::invalid_argument otherwise.
  void record(const Params& params, int64_t step, int64_t first_chain,
              std::span<const uint8_t> states);

  // The split R-hat of the trace, once every read of every traced chain is recorded
  // (std::logic_error before), and the R-hat above which the chains are said not to have mixed:
  // independent_r_hat_quantile at kMixingZ.
  double r_hat() const;
  double threshold() const;

 private:
  int64_t traced_chains_;
  std::vector<int64_t> read_steps_;
  std::vector<double> trace_;      // (traced_chains, reads), row-major
  std::vector<uint8_t> recorded_;  // (traced_chains, reads): whether trace_ holds it
};

}  // namespace rbm
