// The Gibbs half-step on the device (see gibbs_sample.cuh): cuBLAS pre-activations and the fused
// sigmoid + Bernoulli kernel over cuRAND's device Philox, plus the image pick and small helpers.
#include "kernels/gibbs_sample.cuh"

#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.cuh"
#include "kernels/grid_stride.cuh"
#include "kernels/hidden_units.cuh"
#include "kernels/philox_device.cuh"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

int checked_int(int64_t value, const char* what) {
  if (value < 0 || value > INT_MAX) {
    throw std::invalid_argument(std::string(what) + " out of range");
  }
  return static_cast<int>(value);
}

__device__ uint64_t draw_stream(const DrawNames& names, int64_t row) {
  const int64_t base = names.stream_base != nullptr ? *names.stream_base : 0;
  return static_cast<uint64_t>(base + names.stream_offset + row);
}

// One thread per 4 consecutive units of a row: one curand4 call gives their 4 uniforms.
template <HiddenType kType>
__global__ void sigmoid_bernoulli_kernel(const float* pre, const float* __restrict__ bias,
                                         int64_t rows, int units, DrawNames names, float* prob,
                                         float* sample) {
  const int groups = (units + 3) / 4;
  const int64_t total = rows * groups;
  for (int64_t g = global_index(); g < total; g += grid_stride()) {
    const int64_t row = g / groups;
    const int group = static_cast<int>(g % groups);
    uint4 r = make_uint4(0, 0, 0, 0);
    if (sample != nullptr) {
      r = philox_words(names.key, draw_stream(names, row), names.phase,
                       static_cast<uint32_t>(group));
    }
    const uint32_t words[4] = {r.x, r.y, r.z, r.w};
    group_of_units<kType>(pre, bias, row, units, group, words, prob, 1.0f, sample);
  }
}

// One block: thread 0 draws the index, all threads copy the row.
__global__ void pick_image_kernel(const uint8_t* __restrict__ images, int64_t rows, int d,
                                  DrawNames names, float* __restrict__ x0,
                                  int64_t* __restrict__ index_out) {
  __shared__ int64_t index;
  if (threadIdx.x == 0) {
    const uint4 r = philox_words(names.key, draw_stream(names, 0), names.phase, 0);
    index = rbm::index_from_bits(r.x, static_cast<uint32_t>(rows));
    if (index_out != nullptr) *index_out = index;
  }
  __syncthreads();
  const uint8_t* image = images + index * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) x0[i] = image[i] != 0 ? 1.0f : 0.0f;
}

__global__ void set_counter_kernel(int64_t* counter, int64_t value) { *counter = value; }
__global__ void advance_counter_kernel(int64_t* counter) { *counter += 1; }

__global__ void bytes_to_floats_kernel(const uint8_t* __restrict__ in, int64_t n,
                                       float* __restrict__ out) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    out[i] = in[i] != 0 ? 1.0f : 0.0f;
  }
}

__global__ void floats_to_bytes_kernel(const float* __restrict__ in, int64_t n,
                                       uint8_t* __restrict__ out) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    out[i] = in[i] != 0.0f ? 1 : 0;
  }
}

__global__ void philox_words_kernel(const DrawBlock* __restrict__ blocks, int64_t n,
                                    uint32_t* __restrict__ words) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const DrawBlock b = blocks[i];
    const uint4 r = philox_words(b.key, b.stream, b.phase, b.block);
    words[4 * i + 0] = r.x;
    words[4 * i + 1] = r.y;
    words[4 * i + 2] = r.z;
    words[4 * i + 3] = r.w;
  }
}

}  // namespace

void launch_sigmoid_bernoulli(const float* pre, const float* bias, int64_t rows, int units,
                              const DrawNames& names, float* prob, float* sample,
                              cudaStream_t stream, HiddenType type) {
  if (rows <= 0 || units <= 0 || (prob == nullptr && sample == nullptr)) return;
  const int64_t groups = rows * ((units + 3) / 4);
  with_hidden_type(type, [&](auto tag) {
    sigmoid_bernoulli_kernel<decltype(tag)::value>
        <<<grid_for(groups), kThreads, 0, stream>>>(pre, bias, rows, units, names, prob, sample);
  });
  CUDA_CHECK_LAUNCH("sigmoid_bernoulli_kernel");
}

void launch_pick_image(const uint8_t* images, int64_t rows, int d, const DrawNames& names,
                       float* x0, int64_t* index_out, cudaStream_t stream) {
  if (rows <= 0 || rows > UINT32_MAX) throw std::invalid_argument("pick_image: bad row count");
  pick_image_kernel<<<1, kThreads, 0, stream>>>(images, rows, d, names, x0, index_out);
  CUDA_CHECK_LAUNCH("pick_image_kernel");
}

void launch_set_counter(int64_t* counter, int64_t value, cudaStream_t stream) {
  set_counter_kernel<<<1, 1, 0, stream>>>(counter, value);
  CUDA_CHECK_LAUNCH("set_counter_kernel");
}

void launch_advance_counter(int64_t* counter, cudaStream_t stream) {
  advance_counter_kernel<<<1, 1, 0, stream>>>(counter);
  CUDA_CHECK_LAUNCH("advance_counter_kernel");
}

void launch_bytes_to_floats(const uint8_t* in, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return;
  bytes_to_floats_kernel<<<grid_for(n), kThreads, 0, stream>>>(in, n, out);
  CUDA_CHECK_LAUNCH("bytes_to_floats_kernel");
}

void launch_floats_to_bytes(const float* in, int64_t n, uint8_t* out, cudaStream_t stream) {
  if (n <= 0) return;
  floats_to_bytes_kernel<<<grid_for(n), kThreads, 0, stream>>>(in, n, out);
  CUDA_CHECK_LAUNCH("floats_to_bytes_kernel");
}

void launch_philox_words(const DrawBlock* blocks, int64_t n, uint32_t* words, cudaStream_t stream) {
  if (n <= 0) return;
  philox_words_kernel<<<grid_for(n), kThreads, 0, stream>>>(blocks, n, words);
  CUDA_CHECK_LAUNCH("philox_words_kernel");
}

// W (d, H) row-major is W' (H, d) column-major with leading dimension H.
void hidden_preactivation(cublasHandle_t blas, const float* W, int d, int H, const float* x,
                          int64_t rows, float* out) {
  const float one = 1.0f, zero = 0.0f;
  if (rows == 1) {
    // out (H) = W' x: W' (H, d) column-major times x (d).
    CUBLAS_CHECK(cublasSgemv(blas, CUBLAS_OP_N, H, d, &one, W, H, x, 1, &zero, out, 1));
  } else if (rows > 1) {
    // out' (H, rows) = W' (H, d) x' (d, rows), all column-major.
    CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, H, checked_int(rows, "rows"), d, &one,
                             W, H, x, d, &zero, out, H));
  }
}

void visible_preactivation(cublasHandle_t blas, const float* W, int d, int H, const float* h,
                           int64_t rows, float* out) {
  const float one = 1.0f, zero = 0.0f;
  if (rows == 1) {
    // out (d) = W h: the transpose of W' (H, d) column-major times h (H).
    CUBLAS_CHECK(cublasSgemv(blas, CUBLAS_OP_T, H, d, &one, W, H, h, 1, &zero, out, 1));
  } else if (rows > 1) {
    // out' (d, rows) = W (d, H) h' (H, rows), all column-major.
    CUBLAS_CHECK(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, d, checked_int(rows, "rows"), H, &one,
                             W, H, h, H, &zero, out, d));
  }
}

}  // namespace rbm::cuda
