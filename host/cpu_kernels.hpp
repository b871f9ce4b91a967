// The CPU backend's building blocks, exported so that tests compare each CUDA kernel with its
// CPU reference. Shapes: W is (d, H) row-major; x is (d) of 0/1; h is (H).
#pragma once

#include <cstddef>
#include <cstdint>

#include "host/model.hpp"
#include "host/simd.hpp"

namespace rbm::cpu {

// out (H) = b + W' x for a 0/1 vector x (d): the sum of the rows of W where x is 1.
void hidden_preactivation(const Params& params, const uint8_t* x, float* out);

// out (d) = a + W h for h (H) of 0/1, or -1/0/1 for ternary units (a = 0 without visible bias).
void visible_preactivation(const Params& params, const float* h, float* out);

// sum (width) = the sum of the rows rows[0..n_rows) of a row-major matrix whose rows start
// `stride` floats apart; width must be a multiple of 8 (pad the rows with zeros).
void sum_of_rows(const float* matrix, size_t stride, const int* rows, int n_rows, int width,
                 float* sum);

// Writes the indices i < n with below[i] < above[i] to out, in increasing order; returns how
// many. With below the uniforms and above the probabilities: the units a Bernoulli draw sets to 1.
// out must hold n ints: the entries from the returned count on are overwritten too.
int indices_where_less(const float* below, const float* above, int n, int* out);

// uniforms[u] = philox_uniform(key, stream, phase, first_unit + u) for u in [0, n), computed
// with simd() (host/simd.hpp); first_unit must be a multiple of 4 (a Philox block boundary).
void philox_uniforms(uint64_t key, uint64_t stream, uint32_t phase, int first_unit, int n,
                     float* uniforms);
// The same with the given instructions, which must be usable: the same bits on every path.
void philox_uniforms(Simd simd, uint64_t key, uint64_t stream, uint32_t phase, int first_unit,
                     int n, float* uniforms);

// For each unit u in [0, n): prob[u] = sigmoid(pre[u]) and
// sample[u] = bernoulli(philox_uniform(key, stream, phase, u), prob[u]). prob may alias pre.
void sigmoid_bernoulli(const float* pre, int n, uint64_t key, uint64_t stream, uint32_t phase,
                       float* prob, float* sample);

}  // namespace rbm::cpu
