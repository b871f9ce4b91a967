// AIS steps on the device (see ais.cuh): grid-stride kernels over groups of four units (one
// cuRAND Philox call gives their four uniforms) and one block per run for the log-weight sums,
// reduced in a fixed order in double.
#include "kernels/ais.cuh"

#include <algorithm>

#include "kernels/cuda_check.cuh"
#include "kernels/grid_stride.cuh"
#include "kernels/hidden_units.cuh"
#include "kernels/philox_device.cuh"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

constexpr int kRunThreads = 128;  // threads of the one-block-per-run kernel

// Draws 0/1 into out[r, u] for u < units with p = prob_of(r, u), one thread per 4 units of a row.
template <typename ProbOf>
__device__ void bernoulli_rows(int64_t runs, int units, uint64_t key, uint64_t first_stream,
                               uint32_t phase, ProbOf prob_of, float* out) {
  const int groups = (units + 3) / 4;
  const int64_t total = runs * groups;
  for (int64_t g = global_index(); g < total; g += grid_stride()) {
    const int64_t r = g / groups;
    const int group = static_cast<int>(g % groups);
    const uint4 words = philox_words(key, first_stream + static_cast<uint64_t>(r), phase,
                                     static_cast<uint32_t>(group));
    const uint32_t word[4] = {words.x, words.y, words.z, words.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int u = 4 * group + w;
      if (u >= units) break;
      out[r * units + u] = rbm::bernoulli(rbm::uniform_from_bits(word[w]), prob_of(r, u));
    }
  }
}

__global__ void ais_init_kernel(const float* __restrict__ c, int64_t runs, int d, uint64_t key,
                                uint64_t first_stream, uint32_t phase, float* __restrict__ x,
                                double* __restrict__ log_w) {
  bernoulli_rows(
      runs, d, key, first_stream, phase, [&](int64_t, int i) { return rbm::sigmoid(c[i]); }, x);
  for (int64_t r = global_index(); r < runs; r += grid_stride()) {
    log_w[r] = 0.0;
  }
}

// Sums v over the block in a fixed order (a tree over shared memory); the result in thread 0.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kRunThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();  // shared may be reused at once
  return total;
}

template <HiddenType kType>
__global__ void __launch_bounds__(kRunThreads)
    ais_hidden_kernel(const float* __restrict__ xw, const float* __restrict__ b,
                      const float* __restrict__ x, const double* __restrict__ a_minus_c,
                      int64_t runs, int d, int H, double beta, double beta_prev, uint64_t key,
                      uint64_t first_stream, uint32_t phase, double* __restrict__ log_w,
                      float* __restrict__ h) {
  __shared__ double shared[kRunThreads];
  const float beta_f = static_cast<float>(beta);
  const int groups = (H + 3) / 4;
  for (int64_t r = blockIdx.x; r < runs; r += gridDim.x) {
    double increment = 0.0;
    for (int group = threadIdx.x; group < groups; group += blockDim.x) {
      uint32_t word[4] = {0, 0, 0, 0};
      if (h != nullptr) {
        const uint4 words = philox_words(key, first_stream + static_cast<uint64_t>(r), phase,
                                         static_cast<uint32_t>(group));
        word[0] = words.x;
        word[1] = words.y;
        word[2] = words.z;
        word[3] = words.w;
      }
      for (int w = 0; w < 4; ++w) {
        const int j = 4 * group + w;
        if (j >= H) break;
        const float u = xw[r * H + j] + b[j];
        increment += unit_log_term_difference<kType>(beta * u, beta_prev * u);
        if (h != nullptr) {
          h[r * H + j] = unit_draw<kType>(rbm::uniform_from_bits(word[w]), beta_f * u);
        }
      }
    }
    double dot = 0.0;
    if (a_minus_c != nullptr) {
      for (int i = threadIdx.x; i < d; i += blockDim.x) {
        dot += x[r * d + i] != 0.0f ? a_minus_c[i] : 0.0;
      }
    }
    const double total_increment = block_sum(increment, shared);
    const double total_dot = a_minus_c != nullptr ? block_sum(dot, shared) : 0.0;
    if (threadIdx.x == 0) log_w[r] += (beta - beta_prev) * total_dot + total_increment;
  }
}

__global__ void ais_visible_kernel(const float* __restrict__ hw, const float* __restrict__ a,
                                   const float* __restrict__ c, int64_t runs, int d, double beta,
                                   uint64_t key, uint64_t first_stream, uint32_t phase,
                                   float* __restrict__ x) {
  const float beta_f = static_cast<float>(beta);
  bernoulli_rows(
      runs, d, key, first_stream, phase,
      [&](int64_t r, int i) {
        const float t = hw[r * d + i] + (a != nullptr ? a[i] : 0.0f);
        return rbm::sigmoid(beta_f * t + (1.0f - beta_f) * c[i]);
      },
      x);
}

}  // namespace

void launch_ais_init(const float* c, int64_t runs, int d, uint64_t key, uint64_t first_stream,
                     uint32_t phase, float* x, double* log_w, cudaStream_t stream) {
  if (runs <= 0 || d <= 0) return;
  ais_init_kernel<<<grid_for(runs * ((d + 3) / 4)), kThreads, 0, stream>>>(
      c, runs, d, key, first_stream, phase, x, log_w);
  CUDA_CHECK_LAUNCH("ais_init_kernel");
}

void launch_ais_hidden(const float* xw, const float* b, const float* x, const double* a_minus_c,
                       int64_t runs, int d, int H, HiddenType hidden_type, double beta,
                       double beta_prev, uint64_t key, uint64_t first_stream, uint32_t phase,
                       double* log_w, float* h, cudaStream_t stream) {
  if (runs <= 0 || H <= 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(runs, int64_t{1} << 16));
  with_hidden_type(hidden_type, [&](auto tag) {
    ais_hidden_kernel<decltype(tag)::value><<<blocks, kRunThreads, 0, stream>>>(
        xw, b, x, a_minus_c, runs, d, H, beta, beta_prev, key, first_stream, phase, log_w, h);
  });
  CUDA_CHECK_LAUNCH("ais_hidden_kernel");
}

void launch_ais_visible(const float* hw, const float* a, const float* c, int64_t runs, int d,
                        double beta, uint64_t key, uint64_t first_stream, uint32_t phase, float* x,
                        cudaStream_t stream) {
  if (runs <= 0 || d <= 0) return;
  ais_visible_kernel<<<grid_for(runs * ((d + 3) / 4)), kThreads, 0, stream>>>(
      hw, a, c, runs, d, beta, key, first_stream, phase, x);
  CUDA_CHECK_LAUNCH("ais_visible_kernel");
}

}  // namespace rbm::cuda
