// The CD-k update (see cd_update.cuh): one kernel over the d H + H + d parameters.
#include "kernels/cd_update.cuh"

#include <cstdint>

#include "kernels/cuda_check.cuh"
#include "kernels/grid_stride.cuh"

namespace rbm::cuda {
namespace {

// Thread i of the grid-stride loop updates W[i] for i < d H, then b[i - d H], then a[i - d H - H].
// __fmul_rn / __fadd_rn / __fsub_rn keep nvcc from fusing them into FMAs.
__global__ void cd_update_kernel(float* __restrict__ W, float* __restrict__ b,
                                 float* __restrict__ a, int d, int H, const float* __restrict__ x0,
                                 const float* __restrict__ ph0, const float* __restrict__ xk,
                                 const float* __restrict__ phk, float lr) {
  const int64_t n_w = static_cast<int64_t>(d) * H;
  const int64_t total = n_w + H + (a != nullptr ? d : 0);
  for (int64_t at = global_index(); at < total; at += grid_stride()) {
    if (at < n_w) {
      const int i = static_cast<int>(at / H), j = static_cast<int>(at % H);
      const float plus = __fmul_rn(x0[i], __fmul_rn(lr, ph0[j]));
      const float minus = __fmul_rn(xk[i], __fmul_rn(lr, phk[j]));
      W[at] = __fsub_rn(__fadd_rn(W[at], plus), minus);
    } else if (at < n_w + H) {
      const int j = static_cast<int>(at - n_w);
      b[j] = __fadd_rn(b[j], __fmul_rn(lr, __fsub_rn(ph0[j], phk[j])));
    } else {
      const int i = static_cast<int>(at - n_w - H);
      a[i] = __fsub_rn(__fadd_rn(a[i], __fmul_rn(x0[i], lr)), __fmul_rn(xk[i], lr));
    }
  }
}

}  // namespace

void launch_cd_update(float* W, float* b, float* a, int d, int H, const float* x0, const float* ph0,
                      const float* xk, const float* phk, float lr, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(d) * H + H + (a != nullptr ? d : 0);
  if (total <= 0) return;
  cd_update_kernel<<<grid_for(total), kThreads, 0, stream>>>(W, b, a, d, H, x0, ph0, xk, phk, lr);
  CUDA_CHECK_LAUNCH("cd_update_kernel");
}

}  // namespace rbm::cuda
