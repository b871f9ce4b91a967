// One half-step of Gibbs sampling on the device: the cuBLAS pre-activations (W'x, W h), then one
// fused kernel pre-activation (+ bias) -> probability (rbm::sigmoid, or G(t) for ternary hidden
// units) -> Bernoulli (or ternary) draw from cuRAND's device Philox, named as host/backend.hpp
// says. Also the image pick of single-sample CD-k, the iteration counter that names the draws of a
// captured graph, and raw Philox words for the test of the generator match. Launchers only; the
// kernels are static in gibbs_sample.cu.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "host/model.hpp"

namespace rbm::cuda {

// How a launch names its draws (kernels/philox.h): row r of the launch draws from
//   stream = (stream_base ? *stream_base : 0) + stream_offset + r
// at `phase`, unit u taking word u % 4 of philox_block(key, stream, phase, u / 4).
// stream_base is device memory (the training iteration counter), so that a captured graph reads
// the current iteration on replay; the sampler passes null and its first chain as stream_offset.
struct DrawNames {
  uint64_t key = 0;
  const int64_t* stream_base = nullptr;  // device pointer, may be null
  int64_t stream_offset = 0;
  uint32_t phase = 0;
};

// For each row r < rows and unit u < units of pre (rows, units), row-major:
//   t = pre[r, u] + (bias ? bias[u] : 0)                       bias (units)
//   prob[r, u] = sigmoid(t)                                    when prob is not null
//   sample[r, u] = bernoulli(uniform(names, r, u), sigmoid(t)) when sample is not null (0 or 1)
// prob and sample are (rows, units) and must not overlap pre. With type ternary (hidden units of
// a ternary model) prob is ternary_mean(t) and sample ternary_draw(uniform, t) in {-1, 0, 1},
// from the same uniform; visible units are always binary.
void launch_sigmoid_bernoulli(const float* pre, const float* bias, int64_t rows, int units,
                              const DrawNames& names, float* prob, float* sample,
                              cudaStream_t stream, HiddenType type = HiddenType::binary);

// x0 (d) = images[index] as 0/1 floats, images (rows, d) of 0/1 bytes, with
// index = index_from_bits(word 0 of philox_block(key, stream, phase, 0), rows) (row 0 of names).
// Writes the index to *index_out when it is not null.
void launch_pick_image(const uint8_t* images, int64_t rows, int d, const DrawNames& names,
                       float* x0, int64_t* index_out, cudaStream_t stream);

// The iteration counter (one int64 in device memory) that names the draws of a training step.
void launch_set_counter(int64_t* counter, int64_t value, cudaStream_t stream);
void launch_advance_counter(int64_t* counter, cudaStream_t stream);

// 0/1 bytes <-> 0/1 floats, n elements (a float is 1 when it is non-zero).
void launch_bytes_to_floats(const uint8_t* in, int64_t n, float* out, cudaStream_t stream);
void launch_floats_to_bytes(const float* in, int64_t n, uint8_t* out, cudaStream_t stream);

// One Philox block, as the test of the generator match names it.
struct DrawBlock {
  uint64_t key = 0;
  uint64_t stream = 0;
  uint32_t phase = 0;
  uint32_t block = 0;
};
// words (n, 4) = the four words of philox_block(blocks[i]) from cuRAND's device Philox.
void launch_philox_words(const DrawBlock* blocks, int64_t n, uint32_t* words, cudaStream_t stream);

// Pre-activations without bias, on the handle's stream (the caller sets it), W (d, H) row-major:
//   hidden:  out (rows, H) = x (rows, d) W        one row: SGEMV W'x
//   visible: out (rows, d) = h (rows, H) W'       one row: SGEMV W h
// The bias is added by launch_sigmoid_bernoulli. Host pointer mode (alpha = 1, beta = 0 are
// captured by value into a graph).
void hidden_preactivation(cublasHandle_t blas, const float* W, int d, int H, const float* x,
                          int64_t rows, float* out);
void visible_preactivation(cublasHandle_t blas, const float* W, int d, int H, const float* h,
                           int64_t rows, float* out);

}  // namespace rbm::cuda
