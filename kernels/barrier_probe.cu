// Barrier latencies for the fused kernel's lab (see barrier_probe.hpp).
#include "kernels/barrier_probe.hpp"

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <string>

#include "host/errors.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"

namespace rbm {
namespace {

namespace cg = cooperative_groups;

// `rounds` barriers of one kind; each round also changes a register that is stored at the end, so
// that the loop is not removed.
template <bool kCluster>
__global__ void barrier_loop_kernel(int rounds, unsigned* sink) {
  unsigned value = threadIdx.x;
  for (int r = 0; r < rounds; ++r) {
    if constexpr (kCluster) {
      cg::this_cluster().sync();
    } else {
      __syncthreads();
    }
    value = value * 3u + static_cast<unsigned>(r);
  }
  sink[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

// Milliseconds of one launch of `rounds` barriers on one cluster.
template <bool kCluster>
float launch_ms(int cluster_ctas, int threads, int rounds, unsigned* sink, cudaStream_t stream) {
  const auto kernel = barrier_loop_kernel<kCluster>;
  if (cluster_ctas > 8) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  }
  cudaLaunchAttribute cluster;
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = static_cast<unsigned>(cluster_ctas);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(cluster_ctas));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = 1;
  cuda::Event start, stop;
  start.record(stream);
  const cudaError_t status = cudaLaunchKernelEx(&config, kernel, rounds, sink);
  if (status == cudaErrorInvalidClusterSize || status == cudaErrorLaunchOutOfResources) {
    (void)cudaGetLastError();  // not sticky: the device cannot hold this cluster
    throw InputError("barrier probe: the device refused a cluster of " +
                     std::to_string(cluster_ctas) + " x " + std::to_string(threads) + " (" +
                     cudaGetErrorString(status) + ")");
  }
  CUDA_CHECK(status);
  CUDA_CHECK_LAUNCH("barrier_loop_kernel");
  stop.record(stream);
  stop.synchronize();
  return stop.elapsed_ms_since(start);
}

// One barrier's nanoseconds: (time of 2 x rounds - time of rounds) / rounds, after a warm-up; the
// median of 3 such differences, and not below 0 (noise could make one so).
template <bool kCluster>
double barrier_ns(int cluster_ctas, int threads, int rounds, unsigned* sink, cudaStream_t stream) {
  (void)launch_ms<kCluster>(cluster_ctas, threads, rounds, sink, stream);
  std::array<double, 3> differences{};
  for (double& difference : differences) {
    const float once = launch_ms<kCluster>(cluster_ctas, threads, rounds, sink, stream);
    const float twice = launch_ms<kCluster>(cluster_ctas, threads, 2 * rounds, sink, stream);
    difference = 1e6 * static_cast<double>(twice - once) / rounds;
  }
  std::sort(differences.begin(), differences.end());
  return std::max(differences[1], 0.0);
}

}  // namespace

BarrierLatency measure_barrier_latency(int cluster_ctas, int threads, int rounds) {
  if (cluster_ctas < 1 || cluster_ctas > 16 || threads < 32 || threads > 1024 ||
      threads % 32 != 0 || rounds < 1) {
    throw InputError(
        "barrier probe: a cluster of 1..16 CTAs of 32..1024 threads (a multiple of "
        "32), and at least one round");
  }
  cuda::Stream stream;
  cuda::DeviceBuffer<unsigned> sink(static_cast<size_t>(cluster_ctas) *
                                    static_cast<size_t>(threads));
  BarrierLatency latency;
  latency.cta_ns = barrier_ns<false>(cluster_ctas, threads, rounds, sink.data(), stream.get());
  latency.cluster_ns = barrier_ns<true>(cluster_ctas, threads, rounds, sink.data(), stream.get());
  return latency;
}

}  // namespace rbm
