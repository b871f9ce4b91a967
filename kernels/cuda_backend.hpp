// The CUDA backend's public face, includable from plain C++ (no CUDA types): whether a device is
// usable, a description of it, and the factory of the rbm::Backend that runs on it
// (kernels/cuda_backend.cu).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "host/backend.hpp"

namespace rbm {

struct CudaOptions {
  // Capture one training iteration in a CUDA graph and replay it (off: enqueue every kernel).
  bool use_graph = true;
  // Chains per batch in gibbs(); 0: as many as keep each (chains, max(d, H)) buffer <= 64 MiB.
  int64_t gibbs_batch_chains = 0;
};

// Empty when device 0 is usable by this build, else one line saying why not: "no CUDA device",
// "CUDA driver X older than runtime Y", or the CUDA error met (e.g. no kernel image for the GPU).
std::string usable_device_or_reason();

// Device 0 as "NVIDIA H200, 132 SMs, 139.8 GiB, compute capability 9.0, CUDA driver 13.0,
// runtime 13.0". Requires a usable device.
std::string cuda_device_description();

// Throws BackendUnavailable when usable_device_or_reason() gives a reason.
std::unique_ptr<Backend> make_cuda_backend(CudaOptions options = {});

}  // namespace rbm
