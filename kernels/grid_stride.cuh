// Grid-stride loops, the shape of every elementwise kernel here: a grid of at most 2^16 blocks of
// kThreads threads, each thread visiting items global_index(), + grid_stride(), ... < work.
#pragma once

#include <algorithm>
#include <cstdint>

namespace rbm::cuda {

constexpr int kThreads = 256;  // threads per block of a grid-stride kernel

// Blocks for a grid-stride loop over `work` items: one item a thread, at most 2^16 blocks.
inline unsigned grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 16));
}

__device__ inline int64_t global_index() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ inline int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace rbm::cuda
