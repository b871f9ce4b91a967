// The CD-k parameter update of single-sample SGD, applied in place on the device.
#pragma once

#include <cuda_runtime.h>

namespace rbm::cuda {

// W (d, H) row-major += lr (x0 ph0' - xk phk'),   b (H) += lr (ph0 - phk),
// and when a (d) is not null, a += lr (x0 - xk). x0, xk (d) are the data and the chain's last
// visible state, ph0, phk (H) the hidden probabilities given them. Each operation is rounded on
// its own (no FMA), in the CPU reference's order (host/cpu_backend.cpp):
//   w = (w + x0 (lr ph0)) - xk (lr phk),   b = b + lr (ph0 - phk),   a = (a + x0 lr) - xk lr,
// so W and a match the CPU bit for bit given equal inputs (b within an ulp where g++ fuses its
// multiply-add).
void launch_cd_update(float* W, float* b, float* a, int d, int H, const float* x0, const float* ph0,
                      const float* xk, const float* phk, float lr, cudaStream_t stream);

}  // namespace rbm::cuda
