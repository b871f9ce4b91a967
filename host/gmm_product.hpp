// Product of Gaussian-mixture experts: H experts, each a mixture of Gaussians with identity
// covariance, multiply (and renormalize) into one mixture of prod_j C_j Gaussians with covariance
// I/H. Derivation in host/gmm_product.cpp and docs/gmm_product.md. All arithmetic in double.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace rbm {

// One expert: p(x) = sum_k weights[k] N(x; means[k], I) in dim dimensions.
struct GmmExpert {
  int dim = 0;                  // D
  std::vector<double> weights;  // (C,) alpha_k >= 0, summing to 1
  std::vector<double> means;    // (C, D) row-major: means[k * D + i]

  std::size_t components() const { return weights.size(); }
};

// The normalized product: q(x) = sum_k weights[k] N(x; means[k], variance * I).
// Component k is the choice (k_1, ..., k_H) of one component per expert, in lexicographic order
// (expert 0 is the most significant digit, the last expert varies fastest):
// k = ((k_1 * C_2 + k_2) * C_3 + k_3) ... For H = 2, C = 2: (a,a), (a,b), (b,a), (b,b).
struct GaussianMixture {
  int dim = 0;                      // D
  int experts = 0;                  // H
  double variance = 0.0;            // 1 / H: every component's covariance is variance * I
  std::vector<double> log_weights;  // (K,) normalized: log-sum-exp is 0; -inf where an alpha is 0
  std::vector<double> weights;      // (K,) exp(log_weights); may underflow to 0, log_weights do not
  std::vector<double> means;        // (K, D) row-major: the average of the chosen expert means
  // log of the integral of prod_j p_j(x) over R^D, so that q(x) = prod_j p_j(x) / exp(this).
  double log_normalizer = 0.0;

  std::size_t components() const { return weights.size(); }
};

// Limits on the size of the result, checked before anything is allocated.
inline constexpr std::size_t kMaxProductComponents = std::size_t{1} << 22;  // K = prod_j C_j
inline constexpr double kMaxMeanMagnitude = 1e100;  // |an expert's mean entry|
inline constexpr std::size_t kMaxProductMeanEntries = std::size_t{1} << 26;  // K * D (512 MiB)

// The normalized product of the experts as a Gaussian mixture. Throws InputError (host/errors.hpp)
// unless: at least one expert; all experts have the same dim >= 1; each has C >= 1 components
// (counts may differ between experts) and means of size C * D; every weight is finite and
// non-negative and each expert's weights sum to 1 within 1e-9; every mean entry is finite and
// within kMaxMeanMagnitude; and the result fits the limits above.
GaussianMixture product_of_gmm_experts(const std::vector<GmmExpert>& experts);

// The densities below are NaN where a coordinate of x is NaN, and -inf where it is infinite.

// log p(x) for one expert; x is (D,). Throws InputError if x.size() != D or the expert breaks
// product_of_gmm_experts' rules.
double expert_log_density(const GmmExpert& expert, std::span<const double> x);

// log prod_j p_j(x) = sum_j log p_j(x), the unnormalized product; x is (D,). Throws InputError
// where product_of_gmm_experts would refuse the experts, or if x.size() != D.
double unnormalized_product_log_density(const std::vector<GmmExpert>& experts,
                                        std::span<const double> x);

// The normalized product computed directly: sum_j log p_j(x) - log_normalizer; x is (D,).
// With log_normalizer from product_of_gmm_experts this equals mixture_log_density.
double product_log_density(const std::vector<GmmExpert>& experts, double log_normalizer,
                           std::span<const double> x);

// log q(x) for the mixture; x is (D,). Throws InputError if x.size() != D or the mixture's sizes
// do not agree (K >= 1 weights and log weights, K * D means, D >= 1, 0 < variance < inf).
double mixture_log_density(const GaussianMixture& mixture, std::span<const double> x);

}  // namespace rbm
