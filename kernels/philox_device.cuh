// Philox draws inside kernels: cuRAND's device Philox addressed by the names of kernels/philox.h,
// so that any kernel can take any draw without per-thread state. Shared by the Gibbs and AIS
// kernels; tests/cuda checks the words against the CPU's philox_block.
#pragma once

#include <curand_kernel.h>

#include <cstdint>

namespace rbm::cuda {

// The four words of philox_block(key, stream, phase, block) from cuRAND's device Philox:
// curand_init(key, stream, 4 n) sets the counter to (n_lo, n_hi, stream_lo, stream_hi) for
// n = (phase << 32) | block, and curand4 returns Philox4x32-10 of it. The offset 4 n is taken mod
// 2^64, so phases >= 2^30 (kInitPhase) would lose their top bits: the bits of n from 2^61 up are
// added as skipaheads of 2^63 words (2^61 blocks) each, at most 7 of them.
__device__ inline uint4 philox_words(uint64_t key, uint64_t stream, uint32_t phase,
                                     uint32_t block) {
  const uint64_t n = (static_cast<uint64_t>(phase) << 32) | block;
  curandStatePhilox4_32_10_t state;
  curand_init(key, stream, 4ull * (n & ((1ull << 61) - 1)), &state);
  for (uint64_t i = 0; i < (n >> 61); ++i) skipahead(1ull << 63, &state);
  return curand4(&state);
}

}  // namespace rbm::cuda
