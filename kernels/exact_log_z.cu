// Exact log Z on the device (see exact_log_z.cuh). Each warp walks a contiguous range of hidden
// states in Gray-code order, so that consecutive states differ in one unit j and the visible
// pre-activations a + W h (d, in double, in shared memory, each lane owning units i = lane mod 32)
// change by +-W_j. Per state the lanes' softplus sums meet through shuffles and every lane keeps
// the same running log-sum-exp; lane 0 writes it. The host merges the warps' partials.
#include "kernels/exact_log_z.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "host/numeric.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

constexpr int kMaxWarps = 16384;              // warps over the whole enumeration
constexpr size_t kSharedDefault = 48 * 1024;  // dynamic shared memory without opting in

__device__ uint64_t gray(uint64_t n) { return n ^ (n >> 1); }

// WT (H, d) = the transpose of W (d, H).
__global__ void transpose_kernel(const float* __restrict__ W, int d, int H,
                                 float* __restrict__ WT) {
  const int64_t n = static_cast<int64_t>(d) * H;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = k / H, j = k % H;
    WT[j * d + i] = W[k];
  }
}

__global__ void exact_log_z_kernel(const float* __restrict__ WT, const float* __restrict__ b,
                                   const float* __restrict__ a, int d, int H, int64_t n_states,
                                   int64_t chunk, double* __restrict__ out_max,
                                   double* __restrict__ out_sum) {
  extern __shared__ double shared_pre[];  // (warps per block, d)
  const int lane = threadIdx.x % 32, warp_in_block = threadIdx.x / 32;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + warp_in_block;
  double* pre = shared_pre + static_cast<int64_t>(warp_in_block) * d;
  const int64_t begin = warp * chunk, end = min(n_states, begin + chunk);
  double max = -INFINITY, sum = 0.0;  // the running log-sum-exp, sum of exp(v - max)
  if (begin < end) {
    // The first state, built up in the order of the CPU's (units j ascending).
    const uint64_t first = gray(static_cast<uint64_t>(begin));
    double bias = 0.0;
    for (int j = 0; j < H; ++j) bias += ((first >> j) & 1) ? b[j] : 0.0;
    for (int i = lane; i < d; i += 32) {
      double v = a != nullptr ? a[i] : 0.0;
      for (int j = 0; j < H; ++j)
        v += ((first >> j) & 1) ? WT[static_cast<int64_t>(j) * d + i] : 0.0;
      pre[i] = v;
    }
    for (int64_t n = begin; n < end; ++n) {
      if (n > begin) {
        const int j = __ffsll(n) - 1;  // the unit that flips
        const double sign = ((gray(static_cast<uint64_t>(n)) >> j) & 1) ? 1.0 : -1.0;
        bias += sign * b[j];
        const float* w = WT + static_cast<int64_t>(j) * d;
        for (int i = lane; i < d; i += 32) pre[i] += sign * w[i];
      }
      double partial = 0.0;
      for (int i = lane; i < d; i += 32) partial += rbm::softplus(pre[i]);
      for (int offset = 16; offset > 0; offset /= 2) {
        partial += __shfl_xor_sync(0xFFFFFFFFu, partial, offset);
      }
      const double v = bias + partial;
      if (v <= max) {
        sum += exp(v - max);
      } else {
        sum = sum * exp(max - v) + 1.0;
        max = v;
      }
    }
  }
  if (lane == 0) {
    out_max[warp] = max;
    out_sum[warp] = sum;
  }
}

}  // namespace

double exact_log_partition(const float* W, const float* b, const float* a, int d, int H,
                           cudaStream_t stream) {
  if (H < 1 || H > 30) throw std::invalid_argument("exact_log_partition: needs 1 <= H <= 30");
  if (d < 1) throw std::invalid_argument("exact_log_partition: needs d >= 1");
  const int64_t n_states = int64_t{1} << H;
  const int64_t chunk = (n_states + kMaxWarps - 1) / kMaxWarps;
  const int64_t warps = (n_states + chunk - 1) / chunk;
  // As many warps per block (up to 4) as fit the default shared memory; one warp per block beyond
  // that, opting in to more shared memory, up to what the device allows.
  const size_t per_warp = sizeof(double) * static_cast<size_t>(d);
  const int warps_per_block =
      static_cast<int>(std::clamp<size_t>(kSharedDefault / per_warp, size_t{1}, size_t{4}));
  const size_t shared = per_warp * static_cast<size_t>(warps_per_block);
  if (shared > kSharedDefault) {
    int device = 0, limit = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (shared > static_cast<size_t>(limit)) {
      throw std::invalid_argument("exact_log_partition: d = " + std::to_string(d) +
                                  " needs more shared memory than the device has");
    }
    CUDA_CHECK(cudaFuncSetAttribute(exact_log_z_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(shared)));
  }
  DeviceBuffer<float> WT(static_cast<size_t>(d) * H);
  const int64_t n_weights = static_cast<int64_t>(d) * H;
  const unsigned transpose_blocks =
      static_cast<unsigned>(std::clamp<int64_t>((n_weights + 255) / 256, 1, int64_t{1} << 16));
  transpose_kernel<<<transpose_blocks, 256, 0, stream>>>(W, d, H, WT.data());
  CUDA_CHECK_LAUNCH("transpose_kernel");

  const int64_t blocks = (warps + warps_per_block - 1) / warps_per_block;
  const int64_t slots = blocks * warps_per_block;  // every warp of every block writes one
  DeviceBuffer<double> max(static_cast<size_t>(slots)), sum(static_cast<size_t>(slots));
  exact_log_z_kernel<<<static_cast<unsigned>(blocks), 32 * warps_per_block, shared, stream>>>(
      WT.data(), b, a, d, H, n_states, chunk, max.data(), sum.data());
  CUDA_CHECK_LAUNCH("exact_log_z_kernel");
  std::vector<double> host_max(static_cast<size_t>(slots)), host_sum(static_cast<size_t>(slots));
  max.download(host_max.data(), host_max.size(), stream);
  sum.download(host_sum.data(), host_sum.size(), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  LogSumExp total;
  for (size_t w = 0; w < host_max.size(); ++w) total.merge(LogSumExp{host_max[w], host_sum[w]});
  return total.value();
}

}  // namespace rbm::cuda
