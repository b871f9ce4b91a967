// Whether a CUDA device is usable by this build, and what it is (kernels/cuda_backend.hpp).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kernels/cuda_backend.hpp"
#include "kernels/cuda_check.cuh"

namespace rbm {
namespace {

// Loading it tells whether the GPU can run this build's machine code (or JIT its PTX).
__global__ void probe_kernel() {}

std::string version_text(int version) {  // 13000 -> "13.0"
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace

std::string usable_device_or_reason() {
  int driver = 0, runtime = 0;
  // cudaDriverGetVersion gives 0 when no driver is installed; it does not initialize CUDA.
  if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
    (void)cudaGetLastError();
    return "no CUDA device (no NVIDIA driver found)";
  }
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) {
    (void)cudaGetLastError();
    return "no usable CUDA runtime";
  }
  // A driver of an older major version cannot run this runtime (minor versions are compatible).
  if (driver / 1000 < runtime / 1000) {
    return "CUDA driver " + version_text(driver) + " older than runtime " + version_text(runtime);
  }
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    if (status == cudaErrorNoDevice) return "no CUDA device";
    if (status == cudaErrorInsufficientDriver) {
      return "CUDA driver " + version_text(driver) + " older than runtime " + version_text(runtime);
    }
    return std::string("no usable CUDA device: ") + cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device";
  cudaFuncAttributes attributes{};
  const cudaError_t probe = cudaFuncGetAttributes(&attributes, probe_kernel);
  if (probe != cudaSuccess) {
    (void)cudaGetLastError();
    cudaDeviceProp prop{};
    std::string what = "device 0";
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      what = std::string(prop.name) + " (compute capability " + std::to_string(prop.major) + "." +
             std::to_string(prop.minor) + ")";
    }
    (void)cudaGetLastError();
    return what + " cannot run this build: " + cudaGetErrorString(probe);
  }
  return "";
}

std::string cuda_device_description() {
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) {
    (void)cudaGetLastError();
    return "no usable CUDA runtime";
  }
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB",
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return std::string(prop.name) + ", " + std::to_string(prop.multiProcessorCount) + " SMs, " +
         memory + ", compute capability " + std::to_string(prop.major) + "." +
         std::to_string(prop.minor) + ", CUDA driver " + version_text(driver) + ", runtime " +
         version_text(runtime);
}

}  // namespace rbm
