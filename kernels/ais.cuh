// The steps of annealed importance sampling on the device (host/ais.hpp has the math,
// host/backend.hpp the names of the draws): the initial draw from the base model, the hidden
// half-sweep fused with the log-weight increment, and the tempered visible draw. The
// pre-activations between them are cuBLAS SGEMMs over all runs (kernels/gibbs_sample.cuh).
// Launchers only; the kernels are static in ais.cu. Draws of run r come from stream
// first_stream + r under `key`, unit u taking word u % 4 of philox_block(key, stream, phase, u /
// 4).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "host/model.hpp"

namespace rbm::cuda {

// x (runs, d) = bernoulli(uniform(phase, i), sigmoid(c_i)), the base model's draw, c (d);
// log_w (runs) = 0.
void launch_ais_init(const float* c, int64_t runs, int d, uint64_t key, uint64_t first_stream,
                     uint32_t phase, float* x, double* log_w, cudaStream_t stream);

// One block per run r, with u = xw[r] + b (H) in float (xw (runs, H) = x W from cuBLAS):
//   log_w[r] += (beta - beta_prev) sum_i x[r, i] a_minus_c[i]        (skipped when a_minus_c is
//               + sum_j softplus(beta u_j) - softplus(beta_prev u_j)   null), all in double
//   h[r, j] = bernoulli(uniform(phase, j), sigmoid(float(beta) u_j))   when h is not null
// x (runs, d) 0/1, a_minus_c (d), h (runs, H). Ternary hidden units (the tempered p_k* has
// prod_j (1 + 2 cosh(beta u_j)) in place of prod_j (1 + exp(beta u_j))): log(1 + 2 cosh(.)) in
// place of softplus, and h[r, j] = ternary_draw(uniform(phase, j), float(beta) u_j) in {-1, 0, 1}.
void launch_ais_hidden(const float* xw, const float* b, const float* x, const double* a_minus_c,
                       int64_t runs, int d, int H, HiddenType hidden_type, double beta,
                       double beta_prev, uint64_t key, uint64_t first_stream, uint32_t phase,
                       double* log_w, float* h, cudaStream_t stream);

// x[r, i] = bernoulli(uniform(phase, i), sigmoid(beta_f (hw[r, i] + a_i) + (1 - beta_f) c_i)),
// beta_f = float(beta); hw (runs, d) = h W' from cuBLAS (h 0/1 or -1/0/1), a (d) or null (no
// visible bias), c (d).
void launch_ais_visible(const float* hw, const float* a, const float* c, int64_t runs, int d,
                        double beta, uint64_t key, uint64_t first_stream, uint32_t phase, float* x,
                        cudaStream_t stream);

}  // namespace rbm::cuda
