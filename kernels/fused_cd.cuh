// Single-sample CD-k in one persistent kernel (issue 8): W split by rows over the CTAs of one
// thread-block cluster and kept in their shared memory for the whole run; the partial sums of
// W'x are exchanged through distributed shared memory between cluster barriers. Same draws as
// host/backend.hpp names them, so the result matches the CPU reference up to float summation
// order. Binary and ternary hidden units (one kernel instantiation each). The algorithm is
// kernels/fused_cd_cta.h's (emulated on the CPU by tests/test_fused_emulation.cpp); this is
// the launcher, and the kernel is static in fused_cd.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "host/model.hpp"
#include "kernels/cuda_backend.hpp"
#include "kernels/fused_cd_cta.h"

namespace rbm::cuda {

struct FusedCdArgs {
  fused::Problem problem;  // device pointers
  HiddenType hidden_type = HiddenType::binary;
  int64_t first_iteration = 0, count = 0;
};

// Empty when the product's variant (fused_product_variant, kernels/cuda_backend.hpp) can train
// this shape on the current device, else why not (no thread-block clusters before compute
// capability 9.0; W's share per CTA beyond shared memory).
std::string fused_cd_unsupported_reason(int d, int H);

// The same for one variant, adding: no such variant, or a cluster of 16 the device cannot hold.
std::string fused_cd_variant_unsupported_reason(int d, int H, FusedVariant variant);

// Runs iterations [first_iteration, first_iteration + count) in one launch on `stream`.
void launch_fused_cd(const FusedCdArgs& args, FusedVariant variant, cudaStream_t stream);

}  // namespace rbm::cuda
