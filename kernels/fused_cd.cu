// Single-sample CD-k in one persistent kernel (see fused_cd.cuh): the algorithm is
// kernels/fused_cd_cta.h's, run by each CTA of one cluster for its own threads.
//
// One cluster of C = kCtas CTAs of kThreads threads (template parameters: rbm_cuda runs the
// fastest variant the device can hold, fused_product_variant; bench/fused_lab.cpp validates and
// times each). Draws come from rbm::philox_block (kernels/philox.h), word for word cuRAND's device
// Philox (tests/cuda checks that), without curand_init's extra evaluations.
#include "kernels/fused_cd.cuh"

#include <cooperative_groups.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "host/errors.hpp"
#include "host/hidden_units.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/fused_cd_cta.h"

namespace rbm::cuda {
namespace {

namespace cg = cooperative_groups;

// The variants by their time an iteration of the reference recipe on the H200 (fused_lab,
// 2026-12-04: 13.1, 15.3, 16.2 and 22.9 us), fastest first: rbm_cuda runs the first that the
// device can hold for the shape.
constexpr FusedVariant kByMeasuredSpeed[] = {{16, 512}, {8, 512}, {16, 256}, {8, 256}};
constexpr FusedVariant kPortableFewestThreads = {8, 256};  // its reason is given when none runs
constexpr int kPortableClusterCtas = 8;  // beyond it: non-portable, only where the device allows

size_t shared_bytes(int d, int H, int cluster_ctas, int threads) {
  return fused::cta_floats(d, H, cluster_ctas, threads) * sizeof(float);
}

// kernels/fused_cd_cta.h's executor on the device: this CTA's threads, its barriers, the
// cluster's distributed shared memory.
template <int kThreads>
struct ClusterCta {
  fused::Cta cta;
  cg::cluster_group cluster;

  template <typename F>
  __device__ void each_thread(F&& f) {
    f(cta, static_cast<int>(threadIdx.x), kThreads);
  }
  __device__ void sync_cta() { __syncthreads(); }
  __device__ void sync_cluster() { cluster.sync(); }
  __device__ float* partials_to_write(const fused::Cta& c, int buffer) {
    return c.partials + buffer * c.H;
  }
  __device__ float* partials_of(const fused::Cta& c, int rank, int buffer) {
    return cluster.map_shared_rank(c.partials + buffer * c.H, rank);
  }
};

// The cluster's size comes with the launch (launch_variant), not __cluster_dims__: the
// non-portable 16 needs cudaLaunchKernelEx's cluster attribute anyway. Launch bounds (kThreads,
// 1): the one cluster's CTAs have the multiprocessors to themselves, so ptxas may use every
// register (with the default it spilled in one instantiation).
template <HiddenType kType, int kCtas, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) fused_cd_kernel(FusedCdArgs args) {
  extern __shared__ float4 shared_memory[];  // 16-byte aligned, fused::cta_floats long
  cg::cluster_group cluster = cg::this_cluster();
  ClusterCta<kThreads> executor{
      fused::carve_cta(reinterpret_cast<float*>(shared_memory), args.problem.d, args.problem.H,
                       kCtas, kThreads, static_cast<int>(cluster.block_rank())),
      cluster};
  fused::run_fused_cd<kType, kCtas>(executor, args.problem, args.first_iteration, args.count);
}

template <HiddenType kType, int kCtas, int kThreads>
cudaError_t set_kernel_attributes(size_t bytes) {
  const auto kernel = fused_cd_kernel<kType, kCtas, kThreads>;
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes));
  if constexpr (kCtas > kPortableClusterCtas) {
    if (status == cudaSuccess) {
      status = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    }
  }
  return status;
}

cudaLaunchConfig_t launch_config(int cluster_ctas, int threads, size_t bytes, cudaStream_t stream,
                                 cudaLaunchAttribute* cluster) {
  cluster->id = cudaLaunchAttributeClusterDimension;
  cluster->val.clusterDim.x = static_cast<unsigned>(cluster_ctas);
  cluster->val.clusterDim.y = 1;
  cluster->val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(cluster_ctas));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.dynamicSmemBytes = bytes;
  config.stream = stream;
  config.attrs = cluster;
  config.numAttrs = 1;
  return config;
}

// How many clusters of this variant the device can hold at once (0: it cannot run one). A device
// (or a MIG slice) may refuse the cluster size or the shared memory with an error rather than
// answer 0; that error is not sticky, and it means the same: the variant cannot run here.
template <HiddenType kType, int kCtas, int kThreads>
int max_active_clusters(size_t bytes) {
  cudaError_t status = set_kernel_attributes<kType, kCtas, kThreads>(bytes);
  cudaLaunchAttribute cluster;
  const cudaLaunchConfig_t config = launch_config(kCtas, kThreads, bytes, nullptr, &cluster);
  int clusters = 0;
  if (status == cudaSuccess) {
    status =
        cudaOccupancyMaxActiveClusters(&clusters, fused_cd_kernel<kType, kCtas, kThreads>, &config);
  }
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clears it, so that the next check does not report it
    return 0;
  }
  return clusters;
}

// The fewer of the two hidden types' instantiations: they differ in registers (ptxas 13.0 -v for
// sm_90, binary and ternary: 64 and 72 a thread in clusters of 8, 72 and 120 in clusters of 16), so
// a variant counts as supported only when both fit.
template <int kCtas, int kThreads>
int max_active_clusters_of_both_types(size_t bytes) {
  return std::min(max_active_clusters<HiddenType::binary, kCtas, kThreads>(bytes),
                  max_active_clusters<HiddenType::ternary, kCtas, kThreads>(bytes));
}

template <int kCtas, int kThreads>
void launch_variant(const FusedCdArgs& args, cudaStream_t stream) {
  const size_t bytes = shared_bytes(args.problem.d, args.problem.H, kCtas, kThreads);
  with_hidden_type(args.hidden_type, [&](auto tag) {
    constexpr HiddenType kType = decltype(tag)::value;
    CUDA_CHECK((set_kernel_attributes<kType, kCtas, kThreads>(bytes)));
    cudaLaunchAttribute cluster;
    const cudaLaunchConfig_t config = launch_config(kCtas, kThreads, bytes, stream, &cluster);
    const cudaError_t status =
        cudaLaunchKernelEx(&config, fused_cd_kernel<kType, kCtas, kThreads>, args);
    // The occupancy query said the cluster fits; should the launch still refuse its cluster or
    // its resources (errors that are not sticky), that is a variant this device cannot run, not a
    // fault: an InputError, as for the variants the query refuses (the lab skips it, rbm_cuda
    // exits 2).
    if (status == cudaErrorInvalidClusterSize || status == cudaErrorLaunchOutOfResources) {
      (void)cudaGetLastError();
      throw InputError("fused engine: the device refused a cluster of " + std::to_string(kCtas) +
                       " x " + std::to_string(kThreads) + " (" + cudaGetErrorString(status) + ")");
    }
    CUDA_CHECK(status);
  });
  CUDA_CHECK_LAUNCH("fused_cd_kernel");
}

template <int kCtas, int kThreads>
struct Variant {
  static constexpr int ctas = kCtas, threads = kThreads;
};

// The variants compiled (each instantiates the kernel for both hidden types): calls f(Variant<C,
// T>{}) for the one asked for and returns true; false for any other.
template <typename F>
bool with_variant(int cluster_ctas, int threads, F&& f) {
  if (cluster_ctas == 8 && threads == 256) return f(Variant<8, 256>{}), true;
  if (cluster_ctas == 8 && threads == 512) return f(Variant<8, 512>{}), true;
  if (cluster_ctas == 16 && threads == 256) return f(Variant<16, 256>{}), true;
  if (cluster_ctas == 16 && threads == 512) return f(Variant<16, 512>{}), true;
  return false;
}

}  // namespace

std::string fused_cd_variant_unsupported_reason(int d, int H, FusedVariant variant) {
  const auto [cluster_ctas, threads] = variant;
  if (!with_variant(cluster_ctas, threads, [](auto) {})) {
    return "no variant " + std::to_string(cluster_ctas) + " x " + std::to_string(threads) +
           " (cluster CTAs 8 or 16, threads 256 or 512)";
  }
  int device = 0, major = 0, max_shared = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&max_shared, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (major < 9) return "thread-block clusters need compute capability 9.0";
  if (d <= 0 || H <= 0) return "empty model";
  const size_t bytes = shared_bytes(d, H, cluster_ctas, threads);
  if (bytes > static_cast<size_t>(max_shared)) {
    return "W's share per CTA (" + std::to_string(bytes) + " bytes) exceeds shared memory (" +
           std::to_string(max_shared) + " bytes)";
  }
  // A cluster runs only where the device (or its MIG slice, or an MPS share of its SMs) can
  // co-schedule all its CTAs; a non-portable one of 16 may not fit anywhere.
  int clusters = 0;
  with_variant(cluster_ctas, threads, [&](auto v) {
    clusters = max_active_clusters_of_both_types<decltype(v)::ctas, decltype(v)::threads>(bytes);
  });
  if (clusters < 1) {
    return "the device cannot schedule a cluster of " + std::to_string(cluster_ctas) +
           " CTAs with " + std::to_string(bytes) + " bytes of shared memory each";
  }
  return "";
}

std::string fused_cd_unsupported_reason(int d, int H) {
  return fused_cd_variant_unsupported_reason(d, H, fused_product_variant(d, H));
}

void launch_fused_cd(const FusedCdArgs& args, FusedVariant variant, cudaStream_t stream) {
  const auto [cluster_ctas, threads] = variant;
  if (args.count <= 0) return;
  if (args.problem.rows <= 0 || args.problem.rows > int64_t{UINT32_MAX} || args.problem.k < 1) {
    throw std::invalid_argument("launch_fused_cd: bad rows or k");
  }
  const bool known = with_variant(cluster_ctas, threads, [&](auto v) {
    launch_variant<decltype(v)::ctas, decltype(v)::threads>(args, stream);
  });
  if (!known) throw std::invalid_argument("launch_fused_cd: no such variant");
}

}  // namespace rbm::cuda

namespace rbm {

FusedVariant fused_product_variant(int d, int H) {
  for (const FusedVariant variant : cuda::kByMeasuredSpeed) {
    if (cuda::fused_cd_variant_unsupported_reason(d, H, variant).empty()) return variant;
  }
  return cuda::kPortableFewestThreads;
}

}  // namespace rbm
