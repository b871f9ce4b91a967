// Model quality (see evaluate.hpp): exact enumeration for small models, and the batch metrics
// that training logs. Batch products use OpenBLAS sgemm; sums that need it are in double.
#include "host/evaluate.hpp"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "host/hidden_units.hpp"
#include "host/log_product.hpp"
#include "host/model.hpp"
#include "host/numeric.hpp"
#include "host/single_threaded_blas.hpp"
#include "kernels/rbm_math.h"

namespace rbm {
namespace {

// The images as floats (n, d), row-major, for sgemm.
std::vector<float> as_float(const Dataset& images) {
  return std::vector<float>(images.pixels.begin(), images.pixels.end());
}

// out (n, H) = X (n, d) W (d, H) + b.
std::vector<float> hidden_preactivations(const Params& params, const std::vector<float>& x,
                                         int64_t n) {
  const int d = params.visible, H = params.hidden;
  std::vector<float> out(static_cast<size_t>(n) * H);
  for (int64_t r = 0; r < n; ++r) std::copy(params.b.begin(), params.b.end(), out.begin() + r * H);
  const SingleThreadedBlas one_blas_thread;  // small next to the work that follows
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), H, d, 1.0f, x.data(),
              d, params.W.data(), H, 1.0f, out.data(), H);
  return out;
}

// The visible pre-activations W_i h + a_i (d) of the walk's first state n and b'h, in double.
template <typename Walk>
void first_state_sums(const Params& params, const Walk& walk, std::vector<double>& pre,
                      double& bias) {
  const int d = params.visible, H = params.hidden;
  pre.assign(static_cast<size_t>(d), 0.0);
  bias = 0.0;
  for (int i = 0; i < d; ++i) pre[i] = params.has_visible_bias() ? params.a[i] : 0.0;
  for (int j = 0; j < H; ++j) {
    const double h = walk.unit(j);
    if (h == 0.0) continue;
    bias += h * params.b[j];
    for (int i = 0; i < d; ++i) pre[i] += h * params.W[static_cast<size_t>(i) * H + j];
  }
}

// The looks of an enumeration's threads at its request (exact_log_partition in evaluate.hpp):
// before each piece of states, whether to leave (the stop request, or another thread that saw it),
// and after it the count. A thread cannot throw: the caller throws Stopped after joining them.
class EnumerationLooks {
 public:
  explicit EnumerationLooks(const ExactLogZRequest& request) : request_(request) {}

  // state(n) for n in the piece [begin, end), with a look before and the count after; false when
  // the thread is to leave.
  template <typename State>
  bool walk(int64_t begin, int64_t end, const State& state) {
    if (leave()) return false;
    for (int64_t n = begin; n < end; ++n) state(n);
    done(end - begin);
    return true;
  }
  void throw_if_stopped() const {
    if (stopped_.load()) throw Stopped();
  }
  // Whether a thread saw the stop request: the pieces not yet begun are skipped before their setup
  // (a walk's first state, O(d H)), which for all of a 2^30 enumeration's 262144 pieces took
  // seconds after a stop (7 s under AddressSanitizer).
  bool stopped() const { return stopped_.load(std::memory_order_relaxed); }

 private:
  bool leave() {
    if (stopped_.load(std::memory_order_relaxed)) return true;
    if (!stop_requested(request_.stop)) return false;
    stopped_.store(true);
    return true;
  }
  void done(int64_t states) {
    if (request_.states_done != nullptr) {
      request_.states_done->fetch_add(states, std::memory_order_relaxed);
    }
  }

  const ExactLogZRequest& request_;
  std::atomic<bool> stopped_{false};
};

// log sum_h exp(b'h + sum_i softplus(W_i h + a_i)) over the hidden states [0, n_states) of a
// walk in which each state differs from the one before in one unit, by +-1, so that the visible
// pre-activations p = W h + a (d) update in O(d); log-sum-exp in double. The states are walked in
// pieces of kExactStatesPerLook on the threads, each piece from its own first state, and the
// pieces' sums added up in order: the same on any number of threads.
// Walk(H, n) is the walk at state n, walk.unit(j) its h_j, walk.next(n) moves to state n and
// returns the unit that changed and by how much.
//
// This one takes d softplus (an exp and a log1p each) per state. product_walk below gives the same
// sum with no transcendental per unit, and is used whenever its range condition holds.
template <typename Walk>
double softplus_walk(const Params& params, int64_t n_states, const ExactLogZRequest& request) {
  const int d = params.visible, H = params.hidden;
  std::vector<LogSumExp> partial(static_cast<size_t>(piece_count(n_states, kExactStatesPerLook)));
  EnumerationLooks looks(request);
  parallel_pieces(n_states, kExactStatesPerLook, [&](int64_t piece, int64_t begin, int64_t end) {
    if (looks.stopped()) return;
    Walk walk(H, begin);
    std::vector<double> pre;  // (d) W h + a
    double bias = 0.0;        // b'h
    first_state_sums(params, walk, pre, bias);
    LogSumExp acc;
    const bool whole = looks.walk(begin, end, [&](int64_t n) {
      if (n > begin) {
        const auto [j, step] = walk.next(n);
        bias += step * params.b[j];
        for (int i = 0; i < d; ++i) pre[i] += step * params.W[static_cast<size_t>(i) * H + j];
      }
      double log_weight = bias;
      for (int i = 0; i < d; ++i) log_weight += softplus(pre[i]);
      acc.add(log_weight);
    });
    if (whole) partial[static_cast<size_t>(piece)] = acc;
  });
  looks.throw_if_stopped();
  LogSumExp total;
  for (const LogSumExp& p : partial) total.merge(p);
  return total.value();
}

// product_walk's range: every p_i stays in [-kProductMaxExponent, kProductMaxExponent] over all
// hidden states, so e^{p_i} neither overflows nor leaves the normal doubles (a product that
// reached 0 could never come back), and no factor (1 + e^{p_i}) exceeds e^{kProductMaxExponent +
// log 2}: log_product's lanes hold at least one before they are normalized.
constexpr double kProductMaxExponent = 600.0;
// Steps between recomputing e^{p_i} from p_i: bounds the rounding that repeated products gather
// to 256 ulps (relative 5.7e-14 per unit), at d / 256 exps per state (every 64 steps, the exps
// took a third of the walk's time).
constexpr int kProductRefreshSteps = 256;

// The log of the largest of product_walk's factors 1 + e^{p_i}, or nothing when some p_i can leave
// the range, or some step factor e^{+-W_ij} would not be a finite normal double (|W_ij| > 600: a
// bias can hold p_i in range while a single weight is larger). p_i = a_i + sum_j W_ij h_j lies
// within a_i plus the sums of W_ij's that can be negative (low) and positive (high): h in {0, 1}
// takes W_ij's own sign, h in {-1, 0, 1} either.
std::optional<double> product_factor_bound(const Params& params) {
  const int d = params.visible, H = params.hidden;
  const bool ternary = params.hidden_type == HiddenType::ternary;
  double bound = 0.0;
  for (int i = 0; i < d; ++i) {
    double low = params.has_visible_bias() ? params.a[i] : 0.0, high = low;
    for (int j = 0; j < H; ++j) {
      const double w = params.W[static_cast<size_t>(i) * H + j];
      if (!(std::fabs(w) <= kProductMaxExponent)) return std::nullopt;
      low -= ternary ? std::fabs(w) : std::max(-w, 0.0);
      high += ternary ? std::fabs(w) : std::max(w, 0.0);
    }
    if (!(low >= -kProductMaxExponent && high <= kProductMaxExponent)) return std::nullopt;
    bound = std::max(bound, std::max(high, 0.0) + std::log(2.0));  // >= log(1 + e^high)
  }
  return bound;
}

// The same sum as softplus_walk, as exp(sum_i softplus(p_i)) = prod_i (1 + e^{p_i}): a step that
// changes h_j by +-1 multiplies each e^{p_i} by e^{+-W_ij} (tabled), and a state costs one log
// (of the product, kept as mantissas and powers of two: log_product) instead of d exps
// and d log1ps. Every kProductRefreshSteps states, p = W h + a is summed afresh from the state and
// e^p taken from it; in between, a state reads e^p and its step's factors once, updating e^p as it
// multiplies the product (a separate pass for p, one for e^p and one for the product read and
// wrote each of their d values three times a state: the walk was bound by those loads and
// stores). Each factor carries at most 2 kProductRefreshSteps + 1 roundings (each step's tabled
// factor and its multiplication, the exp at a refresh), so a state's log weight is within
// d x 513 x 1.1e-16 of sums in exact arithmetic from the same p (tests/test_evaluate.cpp: at
// d = 64 the products and softplus_walk's sum agree to 1.4e-14).
template <typename Walk>
double product_walk(const Params& params, int64_t n_states, double max_factor_log,
                    const ExactLogZRequest& request) {
  const int d = params.visible, H = params.hidden;
  // (H, d): W' and the factors e^{W'}, e^{-W'}, contiguous over the visible units.
  std::vector<double> w_t(static_cast<size_t>(H) * d), up(w_t.size()), down(w_t.size());
  for (int j = 0; j < H; ++j) {
    for (int i = 0; i < d; ++i) {
      const size_t k = static_cast<size_t>(j) * d + i;
      w_t[k] = params.W[static_cast<size_t>(i) * H + j];
      up[k] = std::exp(w_t[k]);
      down[k] = std::exp(-w_t[k]);
    }
  }
  std::vector<LogSumExp> partial(static_cast<size_t>(piece_count(n_states, kExactStatesPerLook)));
  EnumerationLooks looks(request);
  parallel_pieces(n_states, kExactStatesPerLook, [&](int64_t piece, int64_t begin, int64_t end) {
    if (looks.stopped()) return;
    Walk walk(H, begin);
    std::vector<double> pre(static_cast<size_t>(d));    // (d) p = W h + a, at a refresh
    std::vector<double> e_pre(static_cast<size_t>(d));  // (d) e^p
    double bias = 0.0;                                  // b'h
    for (int j = 0; j < H; ++j) bias += walk.unit(j) * params.b[j];
    const double* factor = nullptr;  // (d) e^{+-W_j'}: the last step's factors
    LogSumExp acc;
    int since_refresh = kProductRefreshSteps;
    const bool whole = looks.walk(begin, end, [&](int64_t n) {
      if (n > begin) {
        const auto [j, step] = walk.next(n);
        bias += step * params.b[j];
        factor = (step > 0 ? up.data() : down.data()) + static_cast<size_t>(j) * d;
      }
      // log prod_i (1 + e^{p_i}) = sum_i softplus(p_i)
      double softplus_sum = 0.0;
      if (since_refresh == kProductRefreshSteps) {
        for (int i = 0; i < d; ++i) pre[i] = params.has_visible_bias() ? params.a[i] : 0.0;
        for (int j = 0; j < H; ++j) {
          const double h = walk.unit(j);
          if (h == 0.0) continue;
          const double* w = w_t.data() + static_cast<size_t>(j) * d;
          for (int i = 0; i < d; ++i) pre[i] += h * w[i];
        }
        for (int i = 0; i < d; ++i) e_pre[i] = std::exp(pre[i]);
        since_refresh = 0;
        softplus_sum = log_product(
            d, [&](int i) { return 1.0 + e_pre[i]; },
            [&](int i) { return 1.0 + load4(e_pre.data() + i); }, max_factor_log);
      } else {
        // log_product asks for each factor once, in order: e^p is updated as it goes.
        softplus_sum = log_product(
            d,
            [&](int i) {
              e_pre[i] *= factor[i];
              return 1.0 + e_pre[i];
            },
            [&](int i) {
              const Double4 e = load4(e_pre.data() + i) * load4(factor + i);
              store4(e_pre.data() + i, e);
              return 1.0 + e;
            },
            max_factor_log);
      }
      ++since_refresh;
      acc.add(bias + softplus_sum);
    });
    if (whole) partial[static_cast<size_t>(piece)] = acc;
  });
  looks.throw_if_stopped();
  LogSumExp total;
  for (const LogSumExp& p : partial) total.merge(p);
  return total.value();
}

template <typename Walk>
double log_sum_over_hidden_walk(const Params& params, int64_t n_states, LogZSum sum,
                                const ExactLogZRequest& request) {
  const std::optional<double> factor_bound = product_factor_bound(params);
  if (sum == LogZSum::products && !factor_bound) {
    throw std::invalid_argument(
        "exact_log_partition: the product of factors would overflow for this model");
  }
  if (factor_bound && sum != LogZSum::softplus) {
    return product_walk<Walk>(params, n_states, *factor_bound, request);
  }
  return softplus_walk<Walk>(params, n_states, request);
}

// The 2^H binary states in Gray-code order: state n is the bits of n ^ (n >> 1); from n - 1 to n
// the bit that flips is the lowest set bit of n.
class BinaryGrayWalk {
 public:
  BinaryGrayWalk(int, int64_t n) : state_(gray(n)) {}
  double unit(int j) const { return static_cast<double>((state_ >> j) & 1); }
  std::pair<int, double> next(int64_t n) {
    const int j = std::countr_zero(static_cast<uint64_t>(n));  // the bit that flips
    state_ = gray(n);
    return {j, ((state_ >> j) & 1) ? 1.0 : -1.0};
  }

 private:
  static int64_t gray(int64_t n) { return n ^ (n >> 1); }
  int64_t state_;
};

// The 3^H ternary states in reflected ternary Gray-code order: state n's base-3 digits n_j give
// h_j = g_j - 1 with g_j = n_j when the digits above j sum to an even number, else 2 - n_j. From
// n - 1 to n only the lowest digit below 2 changes in g, by +-1 (the digits below it wrap 2 -> 0
// while the parity above them flips, which leaves their g as it was).
class TernaryGrayWalk {
 public:
  TernaryGrayWalk(int H, int64_t n) : digits_(static_cast<size_t>(H)), gray_(digits_.size()) {
    for (int j = 0; j < H; ++j, n /= 3) digits_[j] = static_cast<int>(n % 3);
    for (int j = 0; j < H; ++j) gray_[j] = reflected(j);
  }
  double unit(int j) const { return gray_[j] - 1; }
  std::pair<int, double> next(int64_t) {
    int j = 0;
    while (digits_[j] == 2) digits_[j++] = 0;
    ++digits_[j];
    const int g = reflected(j);
    const double step = g - gray_[j];  // +-1
    gray_[j] = g;
    return {j, step};
  }

 private:
  int reflected(int j) const {
    int above = 0;
    for (size_t k = static_cast<size_t>(j) + 1; k < digits_.size(); ++k) above += digits_[k];
    return (above & 1) ? 2 - digits_[j] : digits_[j];
  }
  std::vector<int> digits_, gray_;  // (H)
};

double visible_bias_term(const Params& params, const uint8_t* x) {
  double sum = 0.0;
  if (params.has_visible_bias()) {
    for (int i = 0; i < params.visible; ++i) sum += x[i] ? params.a[i] : 0.0;
  }
  return sum;
}

// W'x + b (H) summed in double.
void exact_preactivations(const Params& params, const uint8_t* x, std::vector<double>& pre) {
  const int d = params.visible, H = params.hidden;
  pre.assign(params.b.begin(), params.b.end());
  for (int i = 0; i < d; ++i) {
    if (!x[i]) continue;
    for (int j = 0; j < H; ++j) pre[j] += params.W[static_cast<size_t>(i) * H + j];
  }
}

// Whether the float GEMM's pre-activations are good enough for every image: each partial sum of
// unit j's pre-activation is bounded by its reach |b_j| + sum_i |W_ij|, and a float's rounding is
// half of 2^-23 of that a step: within a reach of 2^12, 2.4e-4 a step, a thousandth of a nat a
// unit or so for the sums of typical signs (an all-positive column of 784 terms at 4000 can reach
// 3e-3). A trained model's reach is tens to hundreds. Beyond 2^12 the rows are summed in double
// (their ones only: about 0.2 us a row at H 100): a tester's hidden bias of 1e10 had moved the
// exact log p(x) by 2.5 nats.
bool float_preactivations_suffice(const Params& params) {
  const std::vector<double> reach = hidden_reach(params);
  // Written to keep a NaN reach out: NaN <= limit is false.
  return std::all_of(reach.begin(), reach.end(), [](double r) { return r <= kFloatPreciseReach; });
}

// Row r's pre-activations (H) in double: the float GEMM's `pre` (n, H; empty where
// float_preactivations_suffice said no) where the row is finite, else summed again in double (a row
// that overflowed float: weights near FLT_MAX, finite as the model's own), so that a finite model's
// free energies are finite and precise.
void row_preactivations(const Params& params, const std::vector<float>& pre, const uint8_t* x,
                        int64_t r, std::vector<double>& out) {
  const int H = params.hidden;
  if (!pre.empty()) {
    const float* row = pre.data() + static_cast<size_t>(r) * H;
    if (std::all_of(row, row + H, [](float t) { return std::isfinite(t); })) {
      out.assign(row, row + H);
      return;
    }
  }
  exact_preactivations(params, x, out);
}

// The float GEMM's pre-activations of `images` (n, H), or none (every row then summed in double)
// where they would not be precise enough.
std::vector<float> float_preactivations_if_precise(const Params& params, const Dataset& images) {
  if (!float_preactivations_suffice(params)) return {};
  return hidden_preactivations(params, as_float(images), images.rows);
}

}  // namespace

double free_energy(const Params& params, const uint8_t* x) {
  std::vector<double> pre;  // (H)
  exact_preactivations(params, x, pre);
  double energy = -visible_bias_term(params, x);
  with_hidden_type(params.hidden_type, [&](auto type) {
    for (const double t : pre) energy -= hidden_log_sum<decltype(type)::value>(t);
  });
  return energy;
}

double images_log_z_lower_bound(const Params& params, const Dataset& images) {
  if (images.rows == 0) return -std::numeric_limits<double>::infinity();
  if (images.cols() != params.visible) {
    throw std::invalid_argument("images_log_z_lower_bound: images of another width than the model");
  }
  const int d = images.cols();
  const std::vector<double> energies = free_energies(params, images);
  std::vector<std::pair<double, int64_t>> energy_of(static_cast<size_t>(images.rows));
  for (int64_t r = 0; r < images.rows; ++r) {
    energy_of[static_cast<size_t>(r)] = {energies[static_cast<size_t>(r)], r};
  }
  const size_t terms = std::min<size_t>(energy_of.size(), kImagesLowerBoundTerms);
  std::partial_sort(energy_of.begin(), energy_of.begin() + static_cast<std::ptrdiff_t>(terms),
                    energy_of.end());
  // Each image once: a duplicate's term would be counted twice. Then log-sum-exp in double.
  std::vector<std::string_view> seen;
  std::vector<double> minus_f;
  for (size_t k = 0; k < terms; ++k) {
    const std::string_view pixels(reinterpret_cast<const char*>(images.row(energy_of[k].second)),
                                  static_cast<size_t>(d));
    if (std::find(seen.begin(), seen.end(), pixels) != seen.end()) continue;
    seen.push_back(pixels);
    minus_f.push_back(-free_energy(params, images.row(energy_of[k].second)));
  }
  const double top = *std::max_element(minus_f.begin(), minus_f.end());
  double sum = 0.0;
  for (const double t : minus_f) sum += std::exp(t - top);
  return top + std::log(sum);
}

std::vector<double> free_energies(const Params& params, const Dataset& images,
                                  const StopRequest& stop) {
  if (images.rows > 0 && images.cols() != params.visible) {
    throw std::invalid_argument("free_energies: images of another width than the model");
  }
  const int H = params.hidden;
  throw_if_stopped(stop);
  const std::vector<float> pre = float_preactivations_if_precise(params, images);
  std::vector<double> energies(static_cast<size_t>(images.rows));  // (n)
  with_hidden_type(params.hidden_type, [&](auto type) {
    std::vector<double> row;  // (H)
    for (int64_t r = 0; r < images.rows; ++r) {
      throw_if_stopped(stop);
      row_preactivations(params, pre, images.row(r), r, row);
      double energy = -visible_bias_term(params, images.row(r));
      for (int j = 0; j < H; ++j) energy -= hidden_log_sum<decltype(type)::value>(row[j]);
      energies[static_cast<size_t>(r)] = energy;
    }
  });
  return energies;
}

double mean_free_energy(const Params& params, const Dataset& images, const StopRequest& stop) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> energies = free_energies(params, images, stop);
  double total = 0.0;
  for (const double energy : energies) total += energy;
  return total / static_cast<double>(images.rows);
}

int64_t exact_hidden_states(HiddenType type, int hidden) {
  if (type == HiddenType::ternary) {
    if (hidden > kMaxExactTernaryHidden) {
      throw std::invalid_argument("exact_log_partition: a ternary H > 15 is out of reach");
    }
    int64_t n_states = 1;
    for (int j = 0; j < hidden; ++j) n_states *= 3;
    return n_states;
  }
  if (hidden > kMaxExactBinaryHidden) {
    throw std::invalid_argument("exact_log_partition: H > " +
                                std::to_string(kMaxExactBinaryHidden) + " is out of reach");
  }
  return int64_t{1} << hidden;
}

int64_t exact_hidden_states(const Params& params) {
  return exact_hidden_states(params.hidden_type, params.hidden);
}

double exact_log_partition(const Params& params, LogZSum sum, const ExactLogZRequest& request) {
  const int64_t n_states = exact_hidden_states(params);
  if (params.hidden_type == HiddenType::ternary) {
    return log_sum_over_hidden_walk<TernaryGrayWalk>(params, n_states, sum, request);
  }
  return log_sum_over_hidden_walk<BinaryGrayWalk>(params, n_states, sum, request);
}

bool exact_log_partition_uses_products(const Params& params) {
  return product_factor_bound(params).has_value();
}

double mean_log_prob(const Params& params, const Dataset& images, double log_partition,
                     const StopRequest& stop) {
  return -mean_free_energy(params, images, stop) - log_partition;
}

std::vector<double> visible_distribution(const Params& params) {
  const int d = params.visible;
  if (d > 24) throw std::invalid_argument("visible_distribution: d > 24 is out of reach");
  const int64_t n_states = int64_t{1} << d;
  std::vector<double> log_p(static_cast<size_t>(n_states));
  std::vector<uint8_t> x(static_cast<size_t>(d));
  LogSumExp norm;
  for (int64_t s = 0; s < n_states; ++s) {
    for (int i = 0; i < d; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    log_p[s] = -free_energy(params, x.data());
    norm.add(log_p[s]);
  }
  for (double& v : log_p) v = std::exp(v - norm.value());
  return log_p;
}

double reconstruction_error(const Params& params, const Dataset& images, const StopRequest& stop) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const int d = params.visible, H = params.hidden;
  const int n = static_cast<int>(images.rows);
  throw_if_stopped(stop);
  const std::vector<float> x = as_float(images);
  std::vector<float> prob_h = hidden_preactivations(params, x, n);  // (n, H): E[h | x]
  with_hidden_type(params.hidden_type, [&](auto type) {
    for (float& t : prob_h) t = hidden_mean_f<decltype(type)::value>(t);
  });
  std::vector<float> pre_v(static_cast<size_t>(n) * d, 0.0f);  // (n, d)
  if (params.has_visible_bias()) {
    for (int r = 0; r < n; ++r) std::copy(params.a.begin(), params.a.end(), pre_v.begin() + r * d);
  }
  throw_if_stopped(stop);
  {
    const SingleThreadedBlas one_blas_thread;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, H, 1.0f, prob_h.data(), H,
                params.W.data(), H, 1.0f, pre_v.data(), d);
  }
  double total = 0.0;
  with_hidden_type(params.hidden_type, [&](auto type) {
    std::vector<double> t;                             // (H)
    std::vector<double> mean(static_cast<size_t>(H));  // (H) E[h | x]
    for (int r = 0; r < n; ++r) {
      throw_if_stopped(stop);
      const float* v = pre_v.data() + static_cast<size_t>(r) * d;
      const float* p = prob_h.data() + static_cast<size_t>(r) * H;
      const float* xr = x.data() + static_cast<size_t>(r) * d;
      if (std::all_of(v, v + d, [](float u) { return std::isfinite(u); }) &&
          std::none_of(p, p + H, [](float u) { return std::isnan(u); })) {
        for (int i = 0; i < d; ++i) {
          const double diff = xr[i] - sigmoid(v[i]);
          total += diff * diff;
        }
        continue;
      }
      // A float sum overflowed (weights near FLT_MAX, finite as the model's own; +inf meeting
      // -inf is NaN): the row again in double, as row_preactivations does for free energies.
      exact_preactivations(params, images.row(r), t);
      for (int j = 0; j < H; ++j) mean[j] = hidden_mean<decltype(type)::value>(t[j]);
      for (int i = 0; i < d; ++i) {
        double u = params.has_visible_bias() ? params.a[i] : 0.0;
        for (int j = 0; j < H; ++j) u += params.W[static_cast<size_t>(i) * H + j] * mean[j];
        const double diff = xr[i] - hidden_mean<HiddenType::binary>(u);  // sigm(u)
        total += diff * diff;
      }
    }
  });
  return total / static_cast<double>(pre_v.size());
}

double mean_pseudo_log_likelihood(const Params& params, const Dataset& images,
                                  const StopRequest& stop) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const int d = params.visible, H = params.hidden;
  double w_max = 0.0;
  // NaN-keeping maxima (std::max drops a NaN): a NaN parameter sends every image to the sum of u,
  // which carries the NaN into the PLL.
  const auto keep_max = [](double& max, double v) {
    if (std::isnan(v) || v > max) max = v;
  };
  for (const float w : params.W) keep_max(w_max, std::fabs(w));
  // log p(x_i | x_-i) = -softplus(F(x) - F(x')), x' = x with x_i flipped: flipping x_i adds
  // s W_i to the hidden pre-activations t and s a_i to a'x, s = 1 - 2 x_i, so
  // F(x) - F(x') = s a_i + sum_j u(t_j + s W_ij) - sum_j u(t_j), u the hidden unit's log-sum
  // (softplus, or log(1 + 2 cosh) for ternary units). The flipped sum is the log of the product
  // of the factors e^{u(t_j + s W_ij)} = 1 + e^{t_j} e^{s W_ij} (+ e^{-t_j} e^{-s W_ij} for
  // ternary units) from tables of e^{+-t} (per image) and e^{+-W} (per pixel): H multiplications
  // instead of H exps and log1ps. An image with max |t_j| + max |W_ij| + log 3 > 600 (a factor
  // could overflow) takes the sum of u instead.
  constexpr int kBlock = 256;  // images whose tables (H doubles each) are held at once
  double total = 0.0;
  // A worker that saw the stop request leaves its pixels: one pixel of a block (kBlock H factors,
  // 0.1 ms at H 500) between looks.
  std::atomic<bool> stopped{false};
  with_hidden_type(params.hidden_type, [&](auto type) {
    constexpr HiddenType kType = decltype(type)::value;
    for (int64_t first = 0; first < images.rows; first += kBlock) {
      const int n = static_cast<int>(std::min<int64_t>(kBlock, images.rows - first));
      constexpr bool kTernary = kType == HiddenType::ternary;
      std::vector<double> t(static_cast<size_t>(n) * H), e_pos(t.size());  // (n, H) t, e^t
      std::vector<double> e_neg(kTernary ? t.size() : 0);                  // (n, H) e^-t, ternary
      std::vector<double> base(static_cast<size_t>(n));                    // sum_j u(t_j)
      std::vector<double> factor_bound(static_cast<size_t>(n));            // -1: the sum of u
      std::vector<ScaledDouble> e_minus_base(static_cast<size_t>(n));      // e^{-base}
      // The images' tables, in parallel (each image's are its own).
      parallel_for(n, [&](int64_t, int64_t begin, int64_t end) {
        std::vector<double> row;  // (H)
        for (int64_t k = begin; k < end; ++k) {
          if (stop_requested(stop)) {
            stopped.store(true);
            return;
          }
          exact_preactivations(params, images.row(first + k), row);  // double: no float rounding
          double sum = 0.0, t_max = 0.0;
          for (int j = 0; j < H; ++j) {
            const size_t at = static_cast<size_t>(k) * H + j;
            t[at] = row[j];
            sum += hidden_log_sum<kType>(row[j]);
            keep_max(t_max, std::fabs(row[j]));
          }
          base[k] = sum;
          // log of a factor <= |t_j + s W_ij| + log 3.
          const double factor_log = t_max + w_max + std::log(3.0);
          factor_bound[k] = -1.0;
          if (factor_log <= kProductMaxExponent && std::isfinite(sum)) {
            factor_bound[k] = factor_log;
            // |sum| <= H (600 + log 3) here: beyond kScaledExpMax only for H above 1600.
            e_minus_base[k] = std::fabs(sum) <= kScaledExpMax ? scaled_exp(-sum) : ScaledDouble{};
            for (int j = 0; j < H; ++j) {
              const size_t at = static_cast<size_t>(k) * H + j;
              e_pos[at] = std::exp(t[at]);
              if constexpr (kTernary) e_neg[at] = std::exp(-t[at]);
            }
          }
        }
      });
      if (stopped.load()) throw Stopped();
      // Each pixel's sum on its own, added up in pixel order: the same on any number of threads.
      std::vector<double> per_pixel(static_cast<size_t>(d), 0.0);
      parallel_for(d, [&](int64_t, int64_t begin, int64_t end) {
        std::vector<double> up(static_cast<size_t>(H)), down(up.size());  // e^{W_i}, e^{-W_i}
        for (int64_t i = begin; i < end; ++i) {
          double sum = 0.0;
          if (stop_requested(stop)) {
            stopped.store(true);
            return;
          }
          const float* w_row = params.W.data() + static_cast<size_t>(i) * H;
          int unit = 0;  // four at a time, then one
          for (; unit + 4 <= H; unit += 4) {
            Float4 w4;
            std::memcpy(&w4, w_row + unit, sizeof w4);
            const Double4 w = __builtin_convertvector(w4, Double4);
            store4(up.data() + unit, exp4(w));
            store4(down.data() + unit, exp4(-w));
          }
          for (; unit < H; ++unit) {
            up[unit] = std::exp(static_cast<double>(w_row[unit]));
            down[unit] = std::exp(-static_cast<double>(w_row[unit]));
          }
          const double a_i = params.has_visible_bias() ? params.a[i] : 0.0;
          // e^{s a_i} for s = 1 (pixel off) and -1 (on), as ScaledDoubles, for |a_i| within
          // scaled_exp's range (NaN is not); a larger, infinite or NaN a_i takes the log of the
          // product and softplus, as does an image whose base is out of range.
          const bool a_scaled = std::fabs(a_i) <= kScaledExpMax;
          const ScaledDouble e_a_off = a_scaled ? scaled_exp(a_i) : ScaledDouble{};
          const ScaledDouble e_a_on = a_scaled ? scaled_exp(-a_i) : ScaledDouble{};
          for (int k = 0; k < n; ++k) {
            const bool on = images.row(first + k)[i] != 0;
            const double s = on ? -1.0 : 1.0;
            const size_t at = static_cast<size_t>(k) * H;
            if (factor_bound[k] >= 0.0) {
              // e^{t_j + s W_ij} and e^{-(t_j + s W_ij)}
              const double* e = e_pos.data() + at;
              const double* g = on ? down.data() : up.data();
              const double* g_inv = on ? up.data() : down.data();
              const double* e_minus = kTernary ? e_neg.data() + at : nullptr;
              const auto factor = [&](int j) {
                if constexpr (kTernary) {
                  return 1.0 + e[j] * g[j] + e_minus[j] * g_inv[j];
                } else {
                  return 1.0 + e[j] * g[j];
                }
              };
              const auto factor4 = [&](int j) {
                const Double4 plus = load4(e + j) * load4(g + j);
                if constexpr (kTernary) {
                  return 1.0 + plus + load4(e_minus + j) * load4(g_inv + j);
                } else {
                  return 1.0 + plus;
                }
              };
              // softplus(F(x) - F(x')) = log(1 + e^{s a_i} prod_j factor_j e^{-base}): one
              // log1p, where the log of the product and a softplus took a log, an exp and a log1p.
              const ScaledDouble flipped = product_of(H, factor, factor4, factor_bound[k]);
              if (a_scaled && e_minus_base[k].mantissa > 0.0) {
                sum -= log1p_scaled(flipped * (on ? e_a_on : e_a_off) * e_minus_base[k]);
              } else {
                sum -= softplus(s * a_i + log_of(flipped) - base[k]);
              }
            } else {
              double flipped = 0.0;
              for (int j = 0; j < H; ++j) {
                flipped += hidden_log_sum<kType>(t[at + j] + s * w_row[j]);
              }
              sum -= softplus(s * a_i + flipped - base[k]);
            }
          }
          per_pixel[static_cast<size_t>(i)] = sum;
        }
      });
      if (stopped.load()) throw Stopped();
      for (const double v : per_pixel) total += v;
    }
  });
  return total / static_cast<double>(images.rows);
}

Params exact_gradient(const Params& params, const Dataset& images) {
  const int d = params.visible, H = params.hidden;
  if (d > 20) throw std::invalid_argument("exact_gradient: d > 20 is out of reach");
  Params grad;
  grad.visible = d;
  grad.hidden = H;
  grad.hidden_type = params.hidden_type;
  std::vector<double> gW(static_cast<size_t>(d) * H, 0.0), gb(H, 0.0), ga(d, 0.0);
  // Adds weight * (x m', m, x) to the sums, m = E[h | x] (sigm(W'x + b), or G(W'x + b) for
  // ternary units).
  const auto accumulate = [&](const uint8_t* x, double weight) {
    for (int j = 0; j < H; ++j) {
      double t = params.b[j];
      for (int i = 0; i < d; ++i) t += x[i] ? params.W[static_cast<size_t>(i) * H + j] : 0.0;
      const double p = params.hidden_type == HiddenType::ternary
                           ? hidden_mean<HiddenType::ternary>(t)
                           : hidden_mean<HiddenType::binary>(t);
      gb[j] += weight * p;
      for (int i = 0; i < d; ++i) gW[static_cast<size_t>(i) * H + j] += x[i] ? weight * p : 0.0;
    }
    for (int i = 0; i < d; ++i) ga[i] += x[i] ? weight : 0.0;
  };
  for (int64_t r = 0; r < images.rows; ++r) {
    accumulate(images.row(r), 1.0 / static_cast<double>(images.rows));
  }
  const std::vector<double> p_model = visible_distribution(params);
  std::vector<uint8_t> x(static_cast<size_t>(d));
  for (size_t s = 0; s < p_model.size(); ++s) {
    for (int i = 0; i < d; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    accumulate(x.data(), -p_model[s]);
  }
  grad.W.assign(gW.begin(), gW.end());
  grad.b.assign(gb.begin(), gb.end());
  if (params.has_visible_bias()) grad.a.assign(ga.begin(), ga.end());
  return grad;
}

}  // namespace rbm
