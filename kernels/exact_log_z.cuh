// log Z of an RBM exactly on the device, by enumerating the hidden layer:
//   log Z = log sum_h exp(b'h + sum_i softplus(a_i + W_i h)) over h in {0,1}^H,
// the same sum as host/evaluate.cpp's exact_log_partition, in double. A ternary model sums over
// h in {-1, 0, 1}^H instead (3^H states).
#pragma once

#include <cuda_runtime.h>

#include "host/model.hpp"

namespace rbm::cuda {

// W (d, H) row-major, b (H), a (d) or null (no visible bias), all device memory; H <= 30, and
// H <= kMaxExactTernaryHidden (host/evaluate.hpp) for ternary hidden units (std::invalid_argument
// beyond). Enqueues one kernel on `stream` (plus a transpose of W) and waits for it; the per-warp
// partial log-sum-exps are merged on the host.
double exact_log_partition(const float* W, const float* b, const float* a, int d, int H,
                           HiddenType hidden_type, cudaStream_t stream);

}  // namespace rbm::cuda
