// How good a model is: free energy, exact log Z by enumerating the hidden layer (small H), the
// exact log-probability of images, pseudo-log-likelihood and reconstruction error. All sums in
// double. Shapes: images are (n, d) rows of 0/1.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/stop.hpp"

namespace rbm {

// F(x) = -a'x - sum_j softplus(w_j'x + b_j), so that p(x) = exp(-F(x)) / Z; for ternary hidden
// units F(x) = -a'x - sum_j log(1 + 2 cosh(w_j'x + b_j)) (host/hidden_units.hpp: no overflow, no
// loss of precision at any |t|). Every function here follows params.hidden_type.
//
// The batch metrics that training logs (mean free energy, mean log p, reconstruction error,
// pseudo-log-likelihood) take a StopRequest (host/stop.hpp) and throw Stopped when it says so. They
// look at it per image, or per pixel of a block of images; only the GEMMs go without a look: one
// (n, d) x (d, H) product, 0.4 GFLOP for the 500 images of a log point at H 500 (about 20 ms).

double free_energy(const Params& params, const uint8_t* x);

// The reach |b_j| + sum_i |W_ij| of a unit's pre-activation up to which float sums of it keep
// about a thousandth of a nat (2^12; the free energies sum a model beyond it in double), and up to
// which double sums do (2^36). A trained model's reach is tens to hundreds.
inline constexpr double kFloatPreciseReach = 4096.0;
inline constexpr double kDoublePreciseReach = 68719476736.0;

// The free energy of each image ((n)), from float pre-activations (one GEMM) where every unit's
// reach is within kFloatPreciseReach, else in double; each F then summed in double.
std::vector<double> free_energies(const Params& params, const Dataset& images,
                                  const StopRequest& stop = {});
// Their mean over the images (NaN without images).
double mean_free_energy(const Params& params, const Dataset& images, const StopRequest& stop = {});

// An exact lower bound of log Z from the images themselves: log sum exp(-F(x)) over the distinct
// images among the kImagesLowerBoundTerms of lowest free energy (found with float pre-activations,
// each then summed in double by free_energy). Z sums exp(-F(x)) over all 2^d images, so any
// distinct ones bound it; and the bound is at least max -F(x) >= the images' mean -F, so that
// the images' average log p(x) under a log Z raised to it is never above 0. -inf without images.
constexpr int kImagesLowerBoundTerms = 64;
double images_log_z_lower_bound(const Params& params, const Dataset& images);

// log Z = log sum_h exp(b'h + sum_i softplus(W_i h + a_i)), exactly, by enumerating the 2^H hidden
// states (H <= kMaxExactBinaryHidden), or the 3^H of a ternary model (H <= kMaxExactTernaryHidden);
// multithreaded, log-sum-exp in double. std::invalid_argument beyond those.
//
// Two sums give it. `products`: exp(sum_i softplus(p_i)) as the product of the factors
// (1 + e^{p_i}) over the visible units, p = W h + a, each e^{p_i} updated by a multiplication by
// e^{+-W_ij} a step (no exp or log per unit; about 20 times faster), and recomputed from p every
// 256 steps. It needs every p_i within +-600 over all hidden states and every |W_ij| <= 600 (then
// no e^{p_i} and no step factor overflows or underflows). `softplus`: the sum of softplus(p_i).
// `automatic` takes products where they can be taken; asking for products where they cannot is
// std::invalid_argument.
//
// The states are cut in pieces of kExactStatesPerLook, walked on the threads and added up in order
// (the sum is the same on any number of threads); before each piece a thread looks at
// request.stop (then all threads leave, and it throws Stopped), and after it adds the piece to
// request.states_done. A piece takes about 2 ms at d = 784 with
// products, 0.1 s with the softplus sum (measured on 2 cores).
constexpr int kMaxExactBinaryHidden = 30;
constexpr int kMaxExactTernaryHidden = 15;
constexpr int64_t kExactStatesPerLook = 4096;
enum class LogZSum { automatic, products, softplus };
struct ExactLogZRequest {
  StopRequest stop;  // empty: never stop
  // When set, advanced by the states summed (2^H or 3^H in all at the end). For progress.
  std::atomic<int64_t>* states_done = nullptr;
};
double exact_log_partition(const Params& params, LogZSum sum = LogZSum::automatic,
                           const ExactLogZRequest& request = {});

// The hidden states that exact_log_partition enumerates: 2^H, or 3^H for ternary units.
// std::invalid_argument beyond kMaxExactBinaryHidden (kMaxExactTernaryHidden).
int64_t exact_hidden_states(HiddenType type, int hidden);
int64_t exact_hidden_states(const Params& params);

// Whether the products can be taken (what `automatic` takes).
bool exact_log_partition_uses_products(const Params& params);

// Exact log p(x) for each image is -F(x) - log Z; this returns the mean over the images.
double mean_log_prob(const Params& params, const Dataset& images, double log_partition,
                     const StopRequest& stop = {});

// Enumerates all 2^d visible states (d <= 24) and returns p(x) for each, x's bits read as
// x_i = (index >> i) & 1. For tests of samplers on tiny models.
std::vector<double> visible_distribution(const Params& params);

// Mean-field reconstruction error: mean over images and pixels of (x - sigm(W m + a))^2 with
// m = E[h | x] = sigm(W'x + b) (binary) or G(W'x + b) (ternary).
double reconstruction_error(const Params& params, const Dataset& images,
                            const StopRequest& stop = {});

// Exact pseudo-log-likelihood: the mean over images of sum_i log p(x_i | x_-i).
double mean_pseudo_log_likelihood(const Params& params, const Dataset& images,
                                  const StopRequest& stop = {});

// The exact log-likelihood gradient for tiny models (d <= 20), averaged over the images:
// E_data[x h'] - E_model[x h'] with h replaced by its conditional mean (sigm, or G for ternary
// units). Returned as Params-shaped
// gradients (W (d, H), b (H), a (d) when the model has a visible bias).
Params exact_gradient(const Params& params, const Dataset& images);

}  // namespace rbm
