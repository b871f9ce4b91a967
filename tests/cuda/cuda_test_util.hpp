// Shared by the GPU tests: skip visibly, with the reason, when no CUDA device is usable (never
// count a skipped backend as passed); and paths that the device check may override.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda_backend.hpp"
#include "kernels/fused_cd.cuh"

namespace rbm::test {

// Asked once per process: empty when a device is usable.
inline const std::string& cuda_unusable_reason() {
  static const std::string reason = usable_device_or_reason();
  return reason;
}

// The environment variable `name` when set (scripts/device_check runs a build made elsewhere),
// else the path compiled in.
// Total variation distance 1/2 sum |p - q| between two laws on the same states.
inline double total_variation(const std::vector<double>& p, const std::vector<double>& q) {
  double distance = 0.0;
  for (size_t x = 0; x < p.size() && x < q.size(); ++x) distance += 0.5 * std::fabs(p[x] - q[x]);
  return distance;
}

inline std::string path_from_env_or(const char* name, const char* compiled_in) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? std::string(value) : std::string(compiled_in);
}

// RBM_REQUIRE_GPU=1 (scripts/device_check sets it): a device must be usable, so a test that
// would skip fails instead; under compute-sanitizer on a runtime it does not support, every test
// would otherwise skip and the step pass with nothing checked.
inline bool gpu_required() {
  const char* value = std::getenv("RBM_REQUIRE_GPU");
  return value != nullptr && std::string(value) == "1";
}

// Why the fused engine cannot train a d x H model on this (usable) device, empty when it can: a
// GPU before compute capability 9.0 has no thread-block clusters, and a MIG slice or MPS share
// may not hold the cluster. Its tests then skip through RBM_SKIP_FUSED; a test that compares
// several engines runs the others first.
inline std::string fused_unusable_reason(int d, int H) {
  return cuda::fused_cd_unsupported_reason(d, H);
}
// The same for one variant of the kernel (the sanitizer tests name theirs).
inline std::string fused_unusable_reason(int d, int H, FusedVariant variant) {
  return cuda::fused_cd_variant_unsupported_reason(d, H, variant);
}

}  // namespace rbm::test

// First statement of every GPU test.
#define RBM_REQUIRE_CUDA_DEVICE()                                                  \
  do {                                                                             \
    if (!::rbm::test::cuda_unusable_reason().empty()) {                            \
      if (::rbm::test::gpu_required()) {                                           \
        FAIL() << "RBM_REQUIRE_GPU=1 but " << ::rbm::test::cuda_unusable_reason(); \
      }                                                                            \
      GTEST_SKIP() << ::rbm::test::cuda_unusable_reason();                         \
    }                                                                              \
  } while (false)

// Skips the rest of a test, the fused engine being unusable for `reason`; a failure under
// RBM_REQUIRE_GPU=1, where the device check's H200 must run it.
#define RBM_SKIP_FUSED(reason)                                                          \
  do {                                                                                  \
    if (::rbm::test::gpu_required()) {                                                  \
      FAIL() << "RBM_REQUIRE_GPU=1 but the fused engine cannot run here: " << (reason); \
    }                                                                                   \
    GTEST_SKIP() << "the fused engine cannot run here: " << (reason);                   \
  } while (false)
