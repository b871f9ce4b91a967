// Exact log Z on the device (see exact_log_z.cuh). Each warp walks a contiguous range of hidden
// states in Gray-code order, so that consecutive states differ in one unit j and the visible
// pre-activations a + W h (d, in double, in shared memory, each lane owning units i = lane mod 32)
// change by +-W_j. Per state the lanes' softplus sums meet through shuffles and every lane keeps
// the same running log-sum-exp; lane 0 writes it. The host merges the warps' partials.
// Ternary hidden units walk the 3^H states of h in {-1, 0, 1}^H in the reflected base-3 Gray
// code, whose consecutive states also differ in one unit by +-1: the same kernel, another walk.
#include "kernels/exact_log_z.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/numeric.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"
#include "kernels/grid_stride.cuh"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

constexpr int kMaxWarps = 16384;              // warps over the whole enumeration
constexpr size_t kSharedDefault = 48 * 1024;  // dynamic shared memory without opting in

__device__ uint64_t gray(uint64_t n) { return n ^ (n >> 1); }

// Binary states: state n is h = the bits of gray(n).
class BinaryWalk {
 public:
  __device__ BinaryWalk(int64_t n, int /*H*/) : code_(gray(static_cast<uint64_t>(n))) {}
  __device__ double value(int j) const { return ((code_ >> j) & 1) ? 1.0 : 0.0; }
  // Moves to state n (the current one plus 1); returns the unit j that flips, *delta its change.
  __device__ int advance(int64_t n, double* delta) {
    const int j = __ffsll(n) - 1;
    code_ = gray(static_cast<uint64_t>(n));
    *delta = ((code_ >> j) & 1) ? 1.0 : -1.0;
    return j;
  }

 private:
  uint64_t code_;
};

// Ternary states, the reflected base-3 Gray code: with n's base-3 digits n_j, unit j is g_j - 1
// where g_j = n_j when the digits of n above j sum to an even number, else 2 - n_j. From n - 1 to
// n only the lowest digit j of n - 1 that is not 2 moves (up by one; the 2s below it wrap to 0 and
// their g stay, as the parity above them flips too), so g_j moves by +1 (even parity above j) or
// -1 (odd).
class TernaryWalk {
 public:
  __device__ TernaryWalk(int64_t n, int H) : H_(H) {
    for (int j = 0; j < H; ++j) {
      digit_[j] = static_cast<int8_t>(n % 3);
      n /= 3;
    }
    int parity = 0;
    for (int j = H - 1; j >= 0; --j) {
      value_[j] = static_cast<int8_t>((parity ? 2 - digit_[j] : digit_[j]) - 1);
      parity ^= digit_[j] & 1;
    }
  }
  // The start state's units only (advance does not keep them).
  __device__ double value(int j) const { return value_[j]; }
  __device__ int advance(int64_t /*n*/, double* delta) {
    int j = 0;
    while (j < H_ - 1 && digit_[j] == 2) digit_[j++] = 0;
    ++digit_[j];
    int parity = 0;
    for (int k = j + 1; k < H_; ++k) parity ^= digit_[k] & 1;
    *delta = parity ? -1.0 : 1.0;
    return j;
  }

 private:
  int H_;
  int8_t digit_[kMaxExactTernaryHidden];  // n's base-3 digits, least significant first
  int8_t value_[kMaxExactTernaryHidden];  // the start state's h_j in {-1, 0, 1}
};

// WT (H, d) = the transpose of W (d, H).
__global__ void transpose_kernel(const float* __restrict__ W, int d, int H,
                                 float* __restrict__ WT) {
  const int64_t n = static_cast<int64_t>(d) * H;
  for (int64_t k = global_index(); k < n; k += grid_stride()) {
    const int64_t i = k / H, j = k % H;
    WT[j * d + i] = W[k];
  }
}

template <typename Walk>
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
    // The first state, built up in the order of the CPU's (units j ascending); h_j in {-1, 0, 1}
    // times a weight is exact.
    Walk walk(begin, H);
    double bias = 0.0;
    for (int j = 0; j < H; ++j) bias += walk.value(j) * b[j];
    for (int i = lane; i < d; i += 32) {
      double v = a != nullptr ? a[i] : 0.0;
      for (int j = 0; j < H; ++j) v += walk.value(j) * WT[static_cast<int64_t>(j) * d + i];
      pre[i] = v;
    }
    for (int64_t n = begin; n < end; ++n) {
      if (n > begin) {
        double sign = 0.0;
        const int j = walk.advance(n, &sign);  // the unit that moves, by sign
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
                           HiddenType hidden_type, cudaStream_t stream) {
  if (H < 1 || H > 30) throw std::invalid_argument("exact_log_partition: needs 1 <= H <= 30");
  const bool ternary = hidden_type == HiddenType::ternary;
  if (ternary && H > kMaxExactTernaryHidden) {
    throw std::invalid_argument("exact_log_partition: a ternary model needs H <= " +
                                std::to_string(kMaxExactTernaryHidden));
  }
  if (d < 1) throw std::invalid_argument("exact_log_partition: needs d >= 1");
  int64_t n_states = 1;  // 2^H or 3^H
  for (int j = 0; j < H; ++j) n_states *= ternary ? 3 : 2;
  const int64_t chunk = (n_states + kMaxWarps - 1) / kMaxWarps;
  const int64_t warps = (n_states + chunk - 1) / chunk;
  // As many warps per block (up to 4) as fit the default shared memory; one warp per block beyond
  // that, opting in to more shared memory, up to what the device allows.
  const size_t per_warp = sizeof(double) * static_cast<size_t>(d);
  const int warps_per_block =
      static_cast<int>(std::clamp<size_t>(kSharedDefault / per_warp, size_t{1}, size_t{4}));
  const size_t shared = per_warp * static_cast<size_t>(warps_per_block);
  const auto kernel = ternary ? &exact_log_z_kernel<TernaryWalk> : &exact_log_z_kernel<BinaryWalk>;
  if (shared > kSharedDefault) {
    int device = 0, limit = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (shared > static_cast<size_t>(limit)) {
      // A request, not a bug: the CPU build computes it (host/log_z.cpp keeps nothing per d).
      throw InputError("exact log Z on the GPU: d = " + std::to_string(d) + " needs " +
                       std::to_string(shared) + " bytes of shared memory per block, more than " +
                       "the device's " + std::to_string(limit) + "; rbm_cpu eval computes it");
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(shared)));
  }
  DeviceBuffer<float> WT(static_cast<size_t>(d) * H);
  transpose_kernel<<<grid_for(static_cast<int64_t>(d) * H), kThreads, 0, stream>>>(W, d, H,
                                                                                   WT.data());
  CUDA_CHECK_LAUNCH("transpose_kernel");

  const int64_t blocks = (warps + warps_per_block - 1) / warps_per_block;
  const int64_t slots = blocks * warps_per_block;  // every warp of every block writes one
  DeviceBuffer<double> max(static_cast<size_t>(slots)), sum(static_cast<size_t>(slots));
  kernel<<<static_cast<unsigned>(blocks), 32 * warps_per_block, shared, stream>>>(
      WT.data(), b, a, d, H, n_states, chunk, max.data(), sum.data());
  CUDA_CHECK_LAUNCH("exact_log_z_kernel");
  std::vector<double> host_max(static_cast<size_t>(slots)), host_sum(static_cast<size_t>(slots));
  max.download(host_max.data(), host_max.size(), stream);
  sum.download(host_sum.data(), host_sum.size(), stream);
  LogSumExp total;
  for (size_t w = 0; w < host_max.size(); ++w) total.merge(LogSumExp{host_max[w], host_sum[w]});
  return total.value();
}

}  // namespace rbm::cuda
