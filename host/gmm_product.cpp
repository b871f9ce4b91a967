// Product of Gaussian-mixture experts (host/gmm_product.hpp): enumerates the prod_j C_j choices of
// one component per expert and gives each its mean, its log weight and the product's normalizer.
//
// Derivation (also in docs/gmm_product.md). N(x; u, S) is the Gaussian density, |.| the 2-norm.
//  1. p_j(x) = sum_k alpha_jk N(x; u_jk, I). Multiplying the H sums out,
//       prod_j p_j(x) = sum_{(k_1..k_H)} [prod_j alpha_{j,k_j}] prod_j N(x; u_{j,k_j}, I),
//     one term per choice of one component from each expert.
//  2. Fix a choice and write u_j = u_{j,k_j}, m = (1/H) sum_j u_j. Then
//       sum_j |x - u_j|^2 = H|x|^2 - 2 x'(H m) + sum_j |u_j|^2 = H |x - m|^2 + S,
//       S = sum_j |u_j|^2 - H |m|^2 = sum_j |u_j - m|^2   (the spread of the chosen means).
//  3. prod_j N(x; u_j, I) = (2 pi)^(-HD/2) exp(-(1/2) sum_j |x - u_j|^2)
//                         = (2 pi)^(-HD/2) exp(-(H/2) |x - m|^2) exp(-S/2),
//     and N(x; m, I/H) = (2 pi / H)^(-D/2) exp(-(H/2) |x - m|^2), so
//       prod_j N(x; u_j, I) = Z N(x; m, I/H),
//       log Z = -(H-1)(D/2) log(2 pi) - (D/2) log H - S/2.
//  4. Hence prod_j p_j(x) = sum_(k) c_(k) N(x; m_(k), I/H), c_(k) = prod_j alpha_{j,k_j} Z_(k).
//     Each N integrates to 1, so the normalizer is log int prod_j p_j = log sum_(k) c_(k)
//     (log-sum-exp), and the normalized product is the mixture with weights
//       w_(k) = c_(k) / sum c  proportional to  prod_j alpha_{j,k_j} exp(-(1/2) sum_j |u_j - m|^2)
//     (the constant part of log Z cancels). Far-apart choices get exponentially small weight.
//  5. Check, H = 2: m = (u_1 + u_2)/2, u_1 - m = -(u_2 - m) = (u_1 - u_2)/2, S = |u_1 - u_2|^2 / 2,
//     so w proportional to alpha_1 alpha_2 exp(-|u_1 - u_2|^2 / 4), and Z = N(u_1; u_2, 2I), the
//     known int N(x; u_1, I) N(x; u_2, I) dx.
// S is computed as sum_j |(u_j - u_1) - (m - u_1)|^2, in double: from differences of the means,
// so that shifting every mean changes no weight (sum_j |u_j|^2 - H |m|^2 would cancel, and even
// sum_j |u_j - m|^2 carries m's rounding H times, squared).
#include "host/gmm_product.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "host/errors.hpp"

namespace rbm {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kWeightSumTolerance = 1e-9;

// log sum_i exp(v[i]); -inf for an empty input or all -inf; NaN if any v[i] is NaN (std::max
// would skip a NaN or keep it depending on where it stands).
double log_sum_exp(std::span<const double> v) {
  double top = kNegInf;
  for (double t : v) {
    if (std::isnan(t)) return t;
    top = std::max(top, t);
  }
  if (top == kNegInf) return kNegInf;
  double sum = 0.0;
  for (double t : v) sum += std::exp(t - top);
  return top + std::log(sum);
}

// |x - y|^2 for two (D,) vectors.
double squared_distance(const double* x, const double* y, int dim) {
  double s = 0.0;
  for (int i = 0; i < dim; ++i) {
    const double diff = x[i] - y[i];
    s += diff * diff;
  }
  return s;
}

void check_point(std::span<const double> x, int dim, const char* what) {
  if (x.size() != static_cast<std::size_t>(dim)) {
    throw InputError(std::string(what) + ": point has " + std::to_string(x.size()) +
                     " coordinates, expected " + std::to_string(dim));
  }
}

// `name` says which expert in the messages ("expert 3", or "the expert" when there is one).
void validate_expert(const GmmExpert& e, const std::string& name, int dim) {
  if (e.dim < 1) throw InputError(name + ": dimension must be >= 1");
  if (e.dim != dim) {
    throw InputError(name + " has dimension " + std::to_string(e.dim) + ", expert 0 has " +
                     std::to_string(dim));
  }
  const std::size_t c = e.components();
  if (c == 0) throw InputError(name + " has no components");
  if (e.means.size() != c * static_cast<std::size_t>(dim)) {
    throw InputError(name + ": means has " + std::to_string(e.means.size()) +
                     " entries, expected components * dim = " +
                     std::to_string(c * static_cast<std::size_t>(dim)));
  }
  double sum = 0.0;
  for (std::size_t k = 0; k < c; ++k) {
    const double a = e.weights[k];
    if (!std::isfinite(a) || a < 0.0) {
      throw InputError(name + ": weight " + std::to_string(k) + " is " + std::to_string(a) +
                       " (must be finite and non-negative)");
    }
    sum += a;
  }
  if (std::abs(sum - 1.0) > kWeightSumTolerance) {
    throw InputError(name + ": weights sum to " + std::to_string(sum) + ", not 1 (within 1e-9)");
  }
  // Finite and at most kMaxMeanMagnitude: the spreads S (sums of squared distances of up to
  // kMaxProductMeanEntries) stay finite, as do the log weights; an infinite S made every log weight
  // -inf and the weights NaN.
  for (std::size_t i = 0; i < e.means.size(); ++i) {
    if (!std::isfinite(e.means[i])) {
      throw InputError(name + ": mean entry " + std::to_string(i) + " is not finite");
    }
    if (std::abs(e.means[i]) > kMaxMeanMagnitude) {
      throw InputError(name + ": mean entry " + std::to_string(i) + " is beyond +-1e100");
    }
  }
}

// Every expert valid, all of expert 0's dimension (at least one expert).
void validate_experts(const std::vector<GmmExpert>& experts) {
  if (experts.empty()) throw InputError("product of GMM experts: no experts");
  for (std::size_t j = 0; j < experts.size(); ++j) {
    validate_expert(experts[j], "expert " + std::to_string(j), experts[0].dim);
  }
}

// log p(x) of a valid expert whose dimension is x's.
double checked_expert_log_density(const GmmExpert& expert, std::span<const double> x) {
  const std::size_t c = expert.components();
  const double log_norm =
      -(static_cast<double>(expert.dim) / 2.0) * std::log(2.0 * std::numbers::pi);
  std::vector<double> terms(c);
  for (std::size_t k = 0; k < c; ++k) {
    const double* u = &expert.means[k * static_cast<std::size_t>(expert.dim)];
    terms[k] =
        std::log(expert.weights[k]) + log_norm - 0.5 * squared_distance(x.data(), u, expert.dim);
  }
  return log_sum_exp(terms);
}

}  // namespace

GaussianMixture product_of_gmm_experts(const std::vector<GmmExpert>& experts) {
  validate_experts(experts);
  const int dim = experts[0].dim;
  // Size the result before allocating it.
  std::size_t count = 1;
  for (std::size_t j = 0; j < experts.size(); ++j) {
    const std::size_t c = experts[j].components();
    if (count > kMaxProductComponents / c) {
      throw InputError("product of GMM experts: more than " +
                       std::to_string(kMaxProductComponents) +
                       " components (the product of the experts' component counts)");
    }
    count *= c;
  }
  const auto d = static_cast<std::size_t>(dim);
  if (count > kMaxProductMeanEntries / d) {
    throw InputError("product of GMM experts: components * dim = " + std::to_string(count * d) +
                     " exceeds " + std::to_string(kMaxProductMeanEntries));
  }

  const std::size_t H = experts.size();
  const double h = static_cast<double>(H);
  GaussianMixture mix;
  mix.dim = dim;
  mix.experts = static_cast<int>(H);
  mix.variance = 1.0 / h;
  mix.log_weights.resize(count);
  mix.means.resize(count * d);

  // Constant part of log Z (step 3), the same for every choice.
  const double log_z_const =
      -(h - 1.0) * (static_cast<double>(dim) / 2.0) * std::log(2.0 * std::numbers::pi) -
      (static_cast<double>(dim) / 2.0) * std::log(h);

  std::vector<std::size_t> choice(H, 0);  // (k_1..k_H), last expert fastest
  for (std::size_t k = 0; k < count; ++k) {
    double* m = &mix.means[k * d];
    double log_alpha = 0.0;
    for (std::size_t j = 0; j < H; ++j) {
      const double* u = &experts[j].means[choice[j] * d];
      for (std::size_t i = 0; i < d; ++i) m[i] += u[i];
      log_alpha += std::log(experts[j].weights[choice[j]]);  // -inf for a zero weight
    }
    for (std::size_t i = 0; i < d; ++i) m[i] /= h;
    // S = sum_j |u_j - m|^2 from the differences u_j - u_1, whose mean is m - u_1: a shift of
    // every mean leaves them, and so S and the weights, as they were. From m itself, its rounding
    // (up to half an ulp of |m|) entered S H times squared, since sum_j (u_j - m) = 0 (a
    // reviewer's shift by 1.3 * 2^52 moved a weight from 0.127 to 0.043).
    const double* first = &experts[0].means[choice[0] * d];
    double spread = 0.0;
    for (std::size_t i = 0; i < d; ++i) {
      double mean_offset = 0.0;  // (m - u_1)_i
      for (std::size_t j = 0; j < H; ++j) {
        mean_offset += experts[j].means[choice[j] * d + i] - first[i];
      }
      mean_offset /= h;
      for (std::size_t j = 0; j < H; ++j) {
        const double e = (experts[j].means[choice[j] * d + i] - first[i]) - mean_offset;
        spread += e * e;
      }
    }
    mix.log_weights[k] = log_alpha + log_z_const - 0.5 * spread;  // log c_(k), step 4

    for (std::size_t j = H; j-- > 0;) {  // next choice, mixed radix
      if (++choice[j] < experts[j].components()) break;
      choice[j] = 0;
    }
  }

  mix.log_normalizer = log_sum_exp(mix.log_weights);
  mix.weights.resize(count);
  for (std::size_t k = 0; k < count; ++k) {
    mix.log_weights[k] -= mix.log_normalizer;
    mix.weights[k] = std::exp(mix.log_weights[k]);
  }
  return mix;
}

double expert_log_density(const GmmExpert& expert, std::span<const double> x) {
  validate_expert(expert, "the expert", expert.dim);
  check_point(x, expert.dim, "expert_log_density");
  return checked_expert_log_density(expert, x);
}

double unnormalized_product_log_density(const std::vector<GmmExpert>& experts,
                                        std::span<const double> x) {
  validate_experts(experts);
  check_point(x, experts[0].dim, "unnormalized_product_log_density");
  double sum = 0.0;
  for (const GmmExpert& e : experts) sum += checked_expert_log_density(e, x);
  return sum;
}

double product_log_density(const std::vector<GmmExpert>& experts, double log_normalizer,
                           std::span<const double> x) {
  return unnormalized_product_log_density(experts, x) - log_normalizer;
}

double mixture_log_density(const GaussianMixture& mixture, std::span<const double> x) {
  check_point(x, mixture.dim, "mixture_log_density");
  const std::size_t count = mixture.components();
  const auto d = static_cast<std::size_t>(mixture.dim);
  if (mixture.dim < 1 || count == 0 || mixture.log_weights.size() != count ||
      mixture.means.size() != count * d || !(mixture.variance > 0.0) ||
      !std::isfinite(mixture.variance)) {
    throw InputError(
        "mixture_log_density: not a mixture of product_of_gmm_experts' shape (D >= 1, K >= 1 "
        "weights and log weights, K * D means, a finite positive variance)");
  }
  // log N(x; m, v I) = -(D/2) log(2 pi v) - |x - m|^2 / (2 v)
  const double log_norm = -(static_cast<double>(mixture.dim) / 2.0) *
                          std::log(2.0 * std::numbers::pi * mixture.variance);
  std::vector<double> terms(count);
  for (std::size_t k = 0; k < count; ++k) {
    terms[k] =
        mixture.log_weights[k] + log_norm -
        squared_distance(x.data(), &mixture.means[k * d], mixture.dim) / (2.0 * mixture.variance);
  }
  return log_sum_exp(terms);
}

}  // namespace rbm
