// Single-sample CD-k in one persistent kernel (see fused_cd.cuh).
//
// One cluster of C = kCtas CTAs of kThreads threads (template parameters: the product runs
// 8 x 256; bench/fused_lab.cpp validates and times the other variants). CTA c owns rows
// [c R, (c + 1) R) of W (R = ceil(d / C)) in its shared memory, with its slice of x0, xk and a,
// and a copy of b. Per iteration t:
//   pick the image (every CTA draws the same index); each CTA sums its rows of W where x0 is 1
//   into its partial (H); cluster barrier; every CTA adds the C partials in rank order (so all
//   CTAs hold identical ph0 = sigm(b + W'x0)); then k times: draw h (every CTA, identically), the
//   CTA's rows of W h + a, their sigmoid and draws (units named by their global row), the
//   partial sums of W'xk, barrier, ph = sigm(b + W'xk); finally each CTA updates its rows of W
//   and a, and its copy of b (identically everywhere). The partials are double-buffered, so one
//   cluster barrier per hidden layer suffices: a CTA writes buffer p again only after the next
//   barrier, which no CTA reaches before it has finished reading buffer p.
// Draws come from rbm::philox_block (kernels/philox.h), word for word cuRAND's device Philox
// (tests/cuda checks that), without curand_init's extra evaluations.
// Ternary hidden units: ph0 and phk hold the pre-activations t = b + W'x while the chain runs
// (the ternary draw needs t, not a probability) and become G(t) just before the update.
#include "kernels/fused_cd.cuh"

#include <cooperative_groups.h>

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "host/backend.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/hidden_units.cuh"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

namespace cg = cooperative_groups;

// The product's variant: the portable cluster size and 256 threads per CTA.
constexpr int kProductClusterCtas = 8;
constexpr int kProductThreads = 256;
constexpr int kPortableClusterCtas = 8;  // beyond it: non-portable, only where the device allows

__host__ __device__ int rows_per_cta(int d, int cluster_ctas) {
  return (d + cluster_ctas - 1) / cluster_ctas;
}

// Shared memory of one CTA, in floats: W rows (R, H), partials (2, H), b, ph0, phk, h (H each),
// x0, xk, a (R each).
size_t shared_floats(int d, int H, int cluster_ctas) {
  const size_t R = static_cast<size_t>(rows_per_cta(d, cluster_ctas));
  return R * H + 6 * static_cast<size_t>(H) + 3 * R;
}

__device__ float uniform(uint64_t key, uint64_t stream, uint32_t phase, int unit) {
  const PhiloxBlock r = philox_block(key, stream, phase, static_cast<uint32_t>(unit) / 4);
  return uniform_from_bits(r.word[unit % 4]);
}

// partial (H) = the sum of this CTA's rows of W where x (R) is 1; thread j sums column j.
__device__ void partial_row_sums(const float* W_s, const float* x, int n_rows, int H,
                                 float* partial) {
  for (int j = threadIdx.x; j < H; j += blockDim.x) {
    float sum = 0.0f;
    for (int i = 0; i < n_rows; ++i) {
      if (x[i] != 0.0f) sum += W_s[i * H + j];
    }
    partial[j] = sum;
  }
}

// prob (H) = sigm(b + the cluster's partials added in rank order): identical in every CTA.
// Ternary: prob (H) = b + the partials, the pre-activation itself.
template <HiddenType kType, int kCtas>
__device__ void combine_partials(const cg::cluster_group& cluster, float* partial, const float* b_s,
                                 int H, float* prob) {
  for (int j = threadIdx.x; j < H; j += blockDim.x) {
    float total = 0.0f;
    for (int rank = 0; rank < kCtas; ++rank) {
      total += cluster.map_shared_rank(partial, rank)[j];
    }
    if constexpr (kType == HiddenType::ternary) {
      prob[j] = b_s[j] + total;
    } else {
      prob[j] = sigmoid(b_s[j] + total);
    }
  }
}

// The cluster's size comes with the launch (launch_variant), not __cluster_dims__: the
// non-portable 16 needs cudaLaunchKernelEx's cluster attribute anyway.
template <HiddenType kType, int kCtas, int kThreads>
__global__ void __launch_bounds__(kThreads) fused_cd_kernel(FusedCdArgs args) {
  constexpr int kWarps = kThreads / 32;
  extern __shared__ float shared[];
  __shared__ int64_t image;
  cg::cluster_group cluster = cg::this_cluster();
  const int d = args.d, H = args.H;
  const int R = rows_per_cta(d, kCtas);
  const int first_row = static_cast<int>(cluster.block_rank()) * R;
  const int n_rows = max(0, min(R, d - first_row));
  const bool has_a = args.a != nullptr;

  float* W_s = shared;            // (R, H)
  float* partials = W_s + R * H;  // (2, H)
  float* b_s = partials + 2 * H;  // (H)
  float* ph0 = b_s + H;           // (H)
  float* phk = ph0 + H;           // (H)
  float* h = phk + H;             // (H)
  float* x0 = h + H;              // (R)
  float* xk = x0 + R;             // (R)
  float* a_s = xk + R;            // (R)

  for (int q = threadIdx.x; q < n_rows * H; q += blockDim.x) {
    W_s[q] = args.W[static_cast<int64_t>(first_row) * H + q];
  }
  for (int j = threadIdx.x; j < H; j += blockDim.x) b_s[j] = args.b[j];
  for (int i = threadIdx.x; i < n_rows; i += blockDim.x) a_s[i] = has_a ? args.a[first_row + i] : 0;
  __syncthreads();

  int buffer = 0;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t t = args.first_iteration; t < args.first_iteration + args.count; ++t) {
    const uint64_t stream = static_cast<uint64_t>(t);
    if (threadIdx.x == 0) {
      const uint32_t word = philox_block(args.key, stream, train_index_phase(), 0).word[0];
      image = index_from_bits(word, static_cast<uint32_t>(args.rows));
    }
    __syncthreads();
    const uint8_t* pixels = args.images + image * d + first_row;
    for (int i = threadIdx.x; i < n_rows; i += blockDim.x) x0[i] = pixels[i] != 0 ? 1.0f : 0.0f;
    __syncthreads();

    // Positive phase: ph0 = sigm(b + W'x0), also the first hidden draw's probabilities.
    partial_row_sums(W_s, x0, n_rows, H, partials + buffer * H);
    cluster.sync();
    combine_partials<kType, kCtas>(cluster, partials + buffer * H, b_s, H, ph0);
    buffer ^= 1;
    __syncthreads();

    const float* prob_h = ph0;
    for (int step = 0; step < args.k; ++step) {
      for (int j = threadIdx.x; j < H; j += blockDim.x) {
        const float u = uniform(args.key, stream, train_hidden_phase(step), j);
        if constexpr (kType == HiddenType::ternary) {
          h[j] = ternary_draw(u, prob_h[j]);  // prob_h holds t here
        } else {
          h[j] = bernoulli(u, prob_h[j]);
        }
      }
      __syncthreads();
      // This CTA's visible units: a warp per row, lanes over the hidden units, a fixed
      // shuffle tree for the sum.
      for (int i = warp; i < n_rows; i += kWarps) {
        float sum = 0.0f;
        for (int j = lane; j < H; j += 32) sum += W_s[i * H + j] * h[j];
        for (int offset = 16; offset > 0; offset /= 2) {
          sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
        }
        if (lane == 0) {
          const float p = sigmoid(sum + a_s[i]);
          xk[i] = bernoulli(uniform(args.key, stream, train_visible_phase(step), first_row + i), p);
        }
      }
      __syncthreads();
      partial_row_sums(W_s, xk, n_rows, H, partials + buffer * H);
      cluster.sync();
      combine_partials<kType, kCtas>(cluster, partials + buffer * H, b_s, H, phk);
      buffer ^= 1;
      __syncthreads();
      prob_h = phk;
    }

    if constexpr (kType == HiddenType::ternary) {
      // The gradient's means G(t) in place of the pre-activations (this CTA's copies only).
      for (int j = threadIdx.x; j < H; j += blockDim.x) {
        ph0[j] = ternary_mean(ph0[j]);
        phk[j] = ternary_mean(phk[j]);
      }
      __syncthreads();
    }
    // SGD on the CD-k gradient, in the CPU reference's order of roundings:
    // W_i += lr ph0 where x0_i = 1, then W_i += -(lr phk) where xk_i = 1.
    const float lr = args.lr;
    for (int q = threadIdx.x; q < n_rows * H; q += blockDim.x) {
      const int i = q / H, j = q % H;
      float w = W_s[q];
      if (x0[i] != 0.0f) w = __fadd_rn(w, __fmul_rn(lr, ph0[j]));
      if (xk[i] != 0.0f) w = __fadd_rn(w, -__fmul_rn(lr, phk[j]));
      W_s[q] = w;
    }
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
      b_s[j] = __fadd_rn(b_s[j], __fmul_rn(lr, __fsub_rn(ph0[j], phk[j])));
    }
    if (has_a) {
      for (int i = threadIdx.x; i < n_rows; i += blockDim.x) {
        if (x0[i] != 0.0f) a_s[i] = __fadd_rn(a_s[i], lr);
        if (xk[i] != 0.0f) a_s[i] = __fsub_rn(a_s[i], lr);
      }
    }
    __syncthreads();
  }

  for (int q = threadIdx.x; q < n_rows * H; q += blockDim.x) {
    args.W[static_cast<int64_t>(first_row) * H + q] = W_s[q];
  }
  if (cluster.block_rank() == 0) {
    for (int j = threadIdx.x; j < H; j += blockDim.x) args.b[j] = b_s[j];
  }
  if (has_a) {
    for (int i = threadIdx.x; i < n_rows; i += blockDim.x) args.a[first_row + i] = a_s[i];
  }
  // No CTA may exit while another can still read its shared memory.
  cluster.sync();
}

template <HiddenType kType, int kCtas, int kThreads>
void set_kernel_attributes(size_t bytes) {
  const auto kernel = fused_cd_kernel<kType, kCtas, kThreads>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)));
  if constexpr (kCtas > kPortableClusterCtas) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  }
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

// How many clusters of this variant the device can hold at once (0: it cannot run one).
template <int kCtas, int kThreads>
int max_active_clusters(size_t bytes) {
  constexpr HiddenType kType = HiddenType::binary;  // same resources for either unit
  set_kernel_attributes<kType, kCtas, kThreads>(bytes);
  cudaLaunchAttribute cluster;
  const cudaLaunchConfig_t config = launch_config(kCtas, kThreads, bytes, nullptr, &cluster);
  int clusters = 0;
  CUDA_CHECK(
      cudaOccupancyMaxActiveClusters(&clusters, fused_cd_kernel<kType, kCtas, kThreads>, &config));
  return clusters;
}

template <int kCtas, int kThreads>
void launch_variant(const FusedCdArgs& args, cudaStream_t stream) {
  const size_t bytes = shared_floats(args.d, args.H, kCtas) * sizeof(float);
  with_hidden_type(args.hidden_type, [&](auto tag) {
    constexpr HiddenType kType = decltype(tag)::value;
    set_kernel_attributes<kType, kCtas, kThreads>(bytes);
    cudaLaunchAttribute cluster;
    const cudaLaunchConfig_t config = launch_config(kCtas, kThreads, bytes, stream, &cluster);
    CUDA_CHECK(cudaLaunchKernelEx(&config, fused_cd_kernel<kType, kCtas, kThreads>, args));
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

std::string fused_cd_variant_unsupported_reason(int d, int H, int cluster_ctas, int threads) {
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
  const size_t bytes = shared_floats(d, H, cluster_ctas) * sizeof(float);
  if (bytes + 64 > static_cast<size_t>(max_shared)) {
    return "W's share per CTA (" + std::to_string(bytes) + " bytes) exceeds shared memory (" +
           std::to_string(max_shared) + " bytes)";
  }
  if (cluster_ctas > kPortableClusterCtas) {
    // A non-portable cluster runs only where the device (or its MIG slice) can co-schedule it.
    int clusters = 0;
    with_variant(cluster_ctas, threads, [&](auto v) {
      clusters = max_active_clusters<decltype(v)::ctas, decltype(v)::threads>(bytes);
    });
    if (clusters < 1) {
      return "the device cannot schedule a cluster of " + std::to_string(cluster_ctas) +
             " CTAs with " + std::to_string(bytes) + " bytes of shared memory each";
    }
  }
  return "";
}

std::string fused_cd_unsupported_reason(int d, int H) {
  return fused_cd_variant_unsupported_reason(d, H, kProductClusterCtas, kProductThreads);
}

void launch_fused_cd_variant(const FusedCdArgs& args, int cluster_ctas, int threads,
                             cudaStream_t stream) {
  if (args.count <= 0) return;
  if (args.rows <= 0 || args.rows > int64_t{UINT32_MAX} || args.k < 1) {
    throw std::invalid_argument("launch_fused_cd: bad rows or k");
  }
  const bool known = with_variant(cluster_ctas, threads, [&](auto v) {
    launch_variant<decltype(v)::ctas, decltype(v)::threads>(args, stream);
  });
  if (!known) throw std::invalid_argument("launch_fused_cd_variant: no such variant");
}

void launch_fused_cd(const FusedCdArgs& args, cudaStream_t stream) {
  launch_fused_cd_variant(args, kProductClusterCtas, kProductThreads, stream);
}

}  // namespace rbm::cuda
