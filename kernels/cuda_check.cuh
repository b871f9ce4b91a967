// Checks for CUDA runtime, cuBLAS and cuRAND status codes and for kernel launches: one generic
// check that throws std::runtime_error naming the library's error, the statement, function, file
// and line; CUDA_CHECK, CUBLAS_CHECK, CURAND_CHECK and CUDA_CHECK_LAUNCH are built on it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace rbm::cuda {

inline bool failed(cudaError_t status) { return status != cudaSuccess; }
inline bool failed(cublasStatus_t status) { return status != CUBLAS_STATUS_SUCCESS; }
inline bool failed(curandStatus_t status) { return status != CURAND_STATUS_SUCCESS; }

inline std::string describe(cudaError_t status) {
  return std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
         ")";
}
inline std::string describe(cublasStatus_t status) {
  return std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" +
         cublasGetStatusString(status) + ")";
}
inline const char* curand_status_name(curandStatus_t status) {
  switch (status) {
#define RBM_CURAND_STATUS(name) \
  case name:                    \
    return #name
    RBM_CURAND_STATUS(CURAND_STATUS_SUCCESS);
    RBM_CURAND_STATUS(CURAND_STATUS_VERSION_MISMATCH);
    RBM_CURAND_STATUS(CURAND_STATUS_NOT_INITIALIZED);
    RBM_CURAND_STATUS(CURAND_STATUS_ALLOCATION_FAILED);
    RBM_CURAND_STATUS(CURAND_STATUS_TYPE_ERROR);
    RBM_CURAND_STATUS(CURAND_STATUS_OUT_OF_RANGE);
    RBM_CURAND_STATUS(CURAND_STATUS_LENGTH_NOT_MULTIPLE);
    RBM_CURAND_STATUS(CURAND_STATUS_DOUBLE_PRECISION_REQUIRED);
    RBM_CURAND_STATUS(CURAND_STATUS_LAUNCH_FAILURE);
    RBM_CURAND_STATUS(CURAND_STATUS_PREEXISTING_FAILURE);
    RBM_CURAND_STATUS(CURAND_STATUS_INITIALIZATION_FAILED);
    RBM_CURAND_STATUS(CURAND_STATUS_ARCH_MISMATCH);
    RBM_CURAND_STATUS(CURAND_STATUS_INTERNAL_ERROR);
#undef RBM_CURAND_STATUS
  }
  return "unknown status";
}
inline std::string describe(curandStatus_t status) {
  return std::string("cuRAND error ") + curand_status_name(status) + " (" +
         std::to_string(static_cast<int>(status)) + ")";
}

// The one check: throws "<library error> in `statement` (function, file:line)" on failure.
template <typename Status>
void check(Status status, const char* statement, const char* function, const char* file, int line) {
  if (!failed(status)) return;
  // The runtime also keeps a failed call's error as the thread's last error; a later
  // CUDA_CHECK_LAUNCH would report it again, under another kernel's name.
  if constexpr (std::is_same_v<Status, cudaError_t>) (void)cudaGetLastError();
  throw std::runtime_error(describe(status) + " in `" + statement + "` (" + function + ", " + file +
                           ":" + std::to_string(line) + ")");
}

}  // namespace rbm::cuda

// The explicit template argument makes each macro accept only its own library's status type.
#define CUDA_CHECK(call) \
  ::rbm::cuda::check<cudaError_t>((call), #call, __func__, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) \
  ::rbm::cuda::check<cublasStatus_t>((call), #call, __func__, __FILE__, __LINE__)
#define CURAND_CHECK(call) \
  ::rbm::cuda::check<curandStatus_t>((call), #call, __func__, __FILE__, __LINE__)
// After every kernel launch: reports a bad configuration (or an earlier asynchronous error).
#define CUDA_CHECK_LAUNCH(kernel_name) \
  ::rbm::cuda::check(cudaGetLastError(), "launch of " kernel_name, __func__, __FILE__, __LINE__)
