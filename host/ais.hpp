// Annealed importance sampling (Salakhutdinov & Murray 2008, "On the quantitative analysis of deep
// belief networks") for log Z of an RBM: the schedule, the base model, the CPU reference, and the
// summary both builds share. Backend::ais (host/backend.hpp) runs the chains; estimate_log_z
// (host/log_z.hpp) decides between exact enumeration and AIS.
//
// Intermediate distributions, k = 0..K, with the base model's visible biases c (d):
//   p_k*(x, h) = exp((1 - beta_k) c'x + beta_k (a'x + x'Wh + b'h))
//   p_k*(x)    = exp((1 - beta_k) c'x + beta_k a'x) prod_j (1 + exp(beta_k (w_j'x + b_j)))
// At beta_0 = 0 the visible units are independent Bernoulli(sigm(c_i)) and the hidden units fair
// coins: Z_0 = prod_i (1 + exp(c_i)) 2^H, log Z_0 = sum_i softplus(c_i) + H log 2. At beta_K = 1,
// p_K* is the RBM. A run draws x_1 ~ p_0, then for k = 1..K adds
//   log p_k*(x_k) - log p_{k-1}*(x_k) = (beta_k - beta_{k-1}) (a - c)'x_k
//                                       + sum_j softplus(beta_k u_j) - softplus(beta_{k-1} u_j)
// with u = W'x_k + b, to its log weight, and (for k < K) moves x_k -> x_{k+1} by one Gibbs sweep
// that leaves p_k invariant: h ~ sigm(beta_k u), x ~ sigm(beta_k (W h + a) + (1 - beta_k) c).
// Then Z / Z_0 is estimated by the mean of the weights exp(log w).
//
// Ternary hidden units (h_j in {-1, 0, 1}, Params::hidden_type) keep the same scheme: p_k*(x) has
// prod_j (1 + 2 cosh(beta_k u_j)) in place of prod_j (1 + exp(beta_k u_j)), so Z_0 has 3^H for
// 2^H (log Z_0 = sum_i softplus(c_i) + H log 3), the increment has log(1 + 2 cosh(beta_k u_j)) -
// log(1 + 2 cosh(beta_{k-1} u_j)) (host/hidden_units.hpp) for the softplus terms, and the sweep
// draws h_j = ternary_draw(uniform, beta_k u_j) from the same uniform a binary unit would use.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/stop.hpp"

namespace rbm {

struct AisRequest {
  std::vector<float> base_bias;  // (d) visible biases c of the base model; all 0: uniform base
  std::vector<double> betas;     // (K + 1) inverse temperatures, 0 = beta_0 < ... < beta_K = 1
  int64_t runs = 100;            // independent runs M
  uint32_t seed = 1;             // draws: key (seed, Purpose::ais), see host/backend.hpp
  uint64_t first_stream = 0;     // run r draws from stream first_stream + r
  // ais_cpu looks at it before each temperature of each run and throws Stopped; the CUDA backend
  // between chunks of 32 temperatures of all the runs (kernels/cuda_backend.cu).
  StopRequest stop;
  // When set, advanced by the temperature steps done, one per run and step (K per run in all):
  // ais_cpu as each is done, the CUDA backend a chunk of all the runs at a time. For progress.
  std::atomic<int64_t>* steps_done = nullptr;
};

struct AisResult {
  double log_z_base = 0.0;          // log Z_0 = sum_i softplus(c_i) + H log 2 (log 3 ternary)
  std::vector<double> log_weights;  // (runs) log w of each run
};

// Throws InputError when the request does not fit a model of d visible units (bias length or
// values, schedule not from 0 to 1 or not increasing, runs < 1).
void check_ais_request(int d, const AisRequest& request);

// log Z_0 of the base model with visible biases c (d) and H hidden units of the type.
double ais_log_z_base(const std::vector<float>& c, int H, HiddenType type = HiddenType::binary);

// n_betas + 1 inverse temperatures from 0 to 1 (n_betas AIS steps), spaced as in Salakhutdinov &
// Murray for n_betas = 14500: 500 uniformly in [0, 0.5), 4000 in [0.5, 0.9), 10000 in [0.9, 1.0]
// plus the final 1; other counts scale the three segments proportionally (rounded, each >= 1).
// n_betas >= 3.
std::vector<double> ais_betas(int64_t n_betas);

// The base-rate model's visible biases: log-odds of the smoothed pixel frequencies of the
// training images, p_i = (count_i + 0.05) / (n + 0.1) (never 0 or 1).
std::vector<float> base_rate_biases(const Dataset& train);

// log Z = log Zhat with a +-3 standard-error interval: Zhat = Z_0 mean(w), interval
// Z_0 (mean(w) -+ 3 sd(w) / sqrt(M)) (low is -inf when that is not positive); the effective sample
// size (sum w)^2 / sum w^2 (1..M).
struct AisSummary {
  double log_z = 0.0, log_z_low = 0.0, log_z_high = 0.0, ess = 0.0;
};
AisSummary summarize_ais(const AisResult& result);

// The CPU reference of Backend::ais: runs in parallel over cpu_threads() (RBM_CPU_THREADS or the
// hardware's), each run's arithmetic the same whatever the thread count. Draws named as
// host/backend.hpp says. Throws Stopped when request.stop says so: within one temperature step of
// one run (the multiply-adds of W'x and W h, d + H sigmoids: about 0.1 ms at H 500).
AisResult ais_cpu(const Params& params, const AisRequest& request);

// The hidden units' part of the increment of an AIS log weight from beta_prev to beta
// (0 <= beta_prev < beta) at u = W'x + b (H): sum_j hidden_log_sum(beta u_j) -
// hidden_log_sum(beta_prev u_j) for the given kind of hidden unit. ais_cpu's; public for tests.
double ais_hidden_increment(HiddenType type, const float* u, int H, double beta, double beta_prev);

// An exact lower bound: log Z >= log of the terms h in {0, e_1, .., e_H} (and -e_1, .., -e_H for
// ternary units) of Z = sum_h exp(b'h) prod_i (1 + exp(a_i + W_i h)). Without visible biases the h
// = 0 term alone is 2^d, the mass of uniform-noise images, which AIS from the base-rate model can
// miss. Looks at `stop` before each hidden unit's terms (d softplus each) and throws Stopped.
double log_partition_lower_bound(const Params& params, const StopRequest& stop = {});

}  // namespace rbm
