// The CUDA backend's public face, includable from plain C++ (no CUDA types): whether a device is
// usable, a description of it, and the factory of the rbm::Backend that runs on it
// (kernels/cuda_backend.cu).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "host/backend.hpp"

namespace rbm {

// How train_cd runs single-sample CD-k: the design card's cuBLAS GEMVs and small kernels per
// iteration (gemv), or all iterations in one persistent kernel on a thread-block cluster with W
// in shared memory (fused, kernels/fused_cd.cuh; compute capability 9.0), or fused where the
// device and the model allow it and gemv elsewhere (fused_or_gemv: rbm_cuda's default since the
// H200's device check of 2026-12-04 showed fused correct, sanitizer-clean and 3.1 times faster).
enum class CudaEngine { gemv, fused, fused_or_gemv };

// A variant of the fused engine's kernel (kernels/fused_cd.cuh): cluster CTAs (8, portable, or 16)
// x threads per CTA (256 or 512); 0 x 0 names none.
struct FusedVariant {
  int cluster_ctas = 0, threads = 0;
};

struct CudaOptions {
  CudaEngine engine = CudaEngine::gemv;
  // gemv engine: capture one training iteration in a CUDA graph and replay it (off: enqueue
  // every kernel).
  bool use_graph = true;
  // When the capture fails: true (rbm_cuda) says so on stderr and runs plain launches; false
  // (tests and benchmarks of the graph, which must not pass or time plain launches under its
  // name) throws.
  bool graph_fallback = true;
  // Chains per batch in gibbs(); 0: all at once, or as many as one cuBLAS operand of 2^31 - 1
  // elements holds (2.7 million at d = 784) (the memory needed is checked first: about (d + H)
  // floats and d bytes per chain; too many chains are refused with InputError).
  int64_t gibbs_batch_chains = 0;
  // gibbs() moves states to and from the device as bits (8 units per byte) instead of bytes.
  bool packed_states = false;
  // gibbs() runs its two GEMMs on TF32 tensor cores (10-bit mantissas for W; x and h are 0/1, or
  // -1/0/1 for ternary hidden units, and exact). Off: fp32. tests/cuda/test_cuda_minibatch.cpp
  // checks the statistics agree.
  bool tf32 = false;
  // fused engine: the kernel variant, cluster CTAs x threads per CTA (kernels/fused_cd.cuh), set
  // by the lab (bench/fused_lab.cpp); 0 x 0, the default: rbm_cuda's, the fastest variant the
  // device can hold for the model (fused_product_variant, below).
  FusedVariant fused_variant{};
};

// Empty when device 0 is usable by this build, else one line saying why not: "no CUDA device",
// "CUDA driver X older than runtime Y", or the CUDA error met (e.g. no kernel image for the GPU).
std::string usable_device_or_reason();

// Device 0 as "NVIDIA H200, 132 SMs, 139.8 GiB, compute capability 9.0, CUDA driver 13.0,
// runtime 13.0". Requires a usable device.
std::string cuda_device_description();

// The variant that rbm_cuda's fused engine runs for a d x H model on device 0: 16 x 512 where the
// device holds a cluster of 16 CTAs with the model's share of W, else the fastest of the others
// that it holds (kernels/fused_cd.cu orders them by their measured speed).
FusedVariant fused_product_variant(int d, int H);

// Throws BackendUnavailable when usable_device_or_reason() gives a reason.
std::unique_ptr<Backend> make_cuda_backend(CudaOptions options = {});

}  // namespace rbm
