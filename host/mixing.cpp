// The split R-hat of `sample`'s free-energy trace and its threshold (host/mixing.hpp).
#include "host/mixing.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "host/dataset.hpp"
#include "host/evaluate.hpp"

namespace rbm {

std::vector<int64_t> mixing_read_steps(int64_t steps) {
  if (steps < kMixingMinSteps) return {};
  const int64_t half = steps / 2, span = steps - half;
  const int64_t reads = std::min(kMixingReads, span) / 2 * 2;
  std::vector<int64_t> at(static_cast<size_t>(reads));
  // Read r (0-based) after step half + ceil((r + 1) span / reads): the last at K, each read in
  // (half, K], strictly increasing since span >= reads.
  for (int64_t r = 0; r < reads; ++r) {
    at[static_cast<size_t>(r)] = half + ((r + 1) * span + reads - 1) / reads;
  }
  return at;
}

double split_r_hat(std::span<const double> trace, int64_t chains, int64_t reads) {
  if (chains < 1 || reads < 4 || reads % 2 != 0 ||
      trace.size() != static_cast<size_t>(chains) * static_cast<size_t>(reads)) {
    throw std::invalid_argument("split_r_hat: chains >= 1 and an even reads >= 4 of the trace");
  }
  const auto [low, high] = std::minmax_element(trace.begin(), trace.end());
  const double scale = std::max(std::fabs(*low), std::fabs(*high));
  if (*high - *low <= scale * kMixingSameRelative) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const int64_t n = reads / 2, m = 2 * chains;
  // Half-chain j is chain j / 2's first (j even) or second half.
  std::vector<double> means(static_cast<size_t>(m));
  double within = 0.0;  // sum of s_j^2
  for (int64_t j = 0; j < m; ++j) {
    const double* values = trace.data() + (j / 2) * reads + (j % 2) * n;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += values[i];
    const double mean = sum / static_cast<double>(n);
    double squares = 0.0;
    for (int64_t i = 0; i < n; ++i) squares += (values[i] - mean) * (values[i] - mean);
    means[static_cast<size_t>(j)] = mean;
    within += squares / static_cast<double>(n - 1);
  }
  double grand = 0.0;
  for (const double mean : means) grand += mean;
  grand /= static_cast<double>(m);
  double spread = 0.0;
  for (const double mean : means) spread += (mean - grand) * (mean - grand);
  const double nd = static_cast<double>(n);
  const double between = nd / static_cast<double>(m - 1) * spread;  // B
  const double w = within / static_cast<double>(m);                 // W
  if (w == 0.0) {
    return between == 0.0 ? std::numeric_limits<double>::quiet_NaN()
                          : std::numeric_limits<double>::infinity();
  }
  return std::sqrt(((nd - 1.0) / nd * w + between / nd) / w);
}

double independent_r_hat_quantile(int64_t chains, int64_t reads, double z) {
  if (chains < 1 || reads < 4 || reads % 2 != 0) {
    throw std::invalid_argument("independent_r_hat_quantile: chains >= 1 and an even reads >= 4");
  }
  const double n = static_cast<double>(reads / 2), m = 2.0 * static_cast<double>(chains);
  const double k1 = m - 1.0, k2 = m * (n - 1.0);  // F's degrees of freedom
  // Paulson: ((1 - b) u - (1 - a)) / sqrt(b u^2 + a) is about standard normal for u = F^(1/3),
  // a = 2 / (9 k1), b = 2 / (9 k2); setting it to z gives a quadratic in u, the larger root.
  const double a = 2.0 / (9.0 * k1), b = 2.0 / (9.0 * k2);
  const double quadratic = (1 - b) * (1 - b) - z * z * b;
  const double constant = (1 - a) * (1 - a) - z * z * a;
  const double discriminant = (1 - a) * (1 - a) * (1 - b) * (1 - b) - quadratic * constant;
  if (quadratic <= 0.0 || discriminant < 0.0) return std::numeric_limits<double>::infinity();
  const double u = ((1 - a) * (1 - b) + std::sqrt(discriminant)) / quadratic;
  const double f_quantile = u * u * u;
  return std::sqrt((n - 1.0) / n + f_quantile / n);
}

MixingTrace::MixingTrace(int64_t chains, int64_t steps)
    : traced_chains_(chains >= kMixingMinChains ? std::min(chains, kMixingChains) : 0),
      read_steps_(traced_chains_ > 0 ? mixing_read_steps(steps) : std::vector<int64_t>{}) {
  if (read_steps_.empty()) traced_chains_ = 0;
  const size_t size = static_cast<size_t>(traced_chains_) * read_steps_.size();
  trace_.assign(size, 0.0);
  recorded_.assign(size, 0);
}

void MixingTrace::record(const Params& params, int64_t step, int64_t first_chain,
                         std::span<const uint8_t> states) {
  const auto read = std::find(read_steps_.begin(), read_steps_.end(), step);
  const size_t d = static_cast<size_t>(params.visible);
  const int64_t rows = d == 0 ? 0 : static_cast<int64_t>(states.size() / d);
  if (read == read_steps_.end() || first_chain < 0 ||
      states.size() != static_cast<size_t>(rows) * d || first_chain + rows > traced_chains_) {
    throw std::invalid_argument("MixingTrace::record: not a read step, or chains not traced");
  }
  // The chains as images of one row of d pixels, for free_energies' one GEMM.
  Dataset images;
  images.rows = rows;
  images.width = params.visible;
  images.height = 1;
  images.pixels.assign(states.begin(), states.end());
  const std::vector<double> energies = free_energies(params, images);
  const size_t reads = read_steps_.size(), column = static_cast<size_t>(read - read_steps_.begin());
  for (int64_t c = 0; c < rows; ++c) {
    const size_t at = static_cast<size_t>(first_chain + c) * reads + column;
    trace_[at] = energies[static_cast<size_t>(c)];
    recorded_[at] = 1;
  }
}

double MixingTrace::r_hat() const {
  if (!judged() || std::find(recorded_.begin(), recorded_.end(), 0) != recorded_.end()) {
    throw std::logic_error("MixingTrace::r_hat: the trace is not complete");
  }
  return split_r_hat(trace_, traced_chains_, static_cast<int64_t>(read_steps_.size()));
}

double MixingTrace::threshold() const {
  if (!judged()) throw std::logic_error("MixingTrace::threshold: nothing to judge");
  return independent_r_hat_quantile(traced_chains_, static_cast<int64_t>(read_steps_.size()),
                                    kMixingZ);
}

}  // namespace rbm
