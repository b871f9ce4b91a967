// Philox4x32-10 (Salmon et al., SC'11), the one counter-based generator of both builds, as
// __host__ __device__ code; and how a draw is named. The CUDA kernels use cuRAND's device Philox
// (curand_init(key, stream, 4 * n) then curand4 returns philox(counter = (n_lo, n_hi, stream_lo,
// stream_hi), key)), which tests/cuda checks against this function; the CPU calls it directly.
#pragma once

#include <cstdint>

#include "kernels/rbm_math.h"

namespace rbm {

struct PhiloxBlock {
  uint32_t word[4];
};

RBM_HD void philox_round(uint32_t ctr[4], const uint32_t key[2]) {
  const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * ctr[0];
  const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * ctr[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  const uint32_t c1 = ctr[1], c3 = ctr[3];
  ctr[0] = hi1 ^ c1 ^ key[0];
  ctr[1] = lo1;
  ctr[2] = hi0 ^ c3 ^ key[1];
  ctr[3] = lo0;
}

// Philox4x32-10 of the 128-bit counter under the 64-bit key.
RBM_HD PhiloxBlock philox4x32_10(const uint32_t counter[4], const uint32_t key_in[2]) {
  uint32_t ctr[4] = {counter[0], counter[1], counter[2], counter[3]};
  uint32_t key[2] = {key_in[0], key_in[1]};
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    philox_round(ctr, key);
  }
  return PhiloxBlock{{ctr[0], ctr[1], ctr[2], ctr[3]}};
}

// What a run's random numbers are for. The key is (seed, purpose): one user seed gives
// independent generators for each purpose.
enum class Purpose : uint32_t { init = 0, train = 1, sample = 2, ais = 3, shuffle = 4 };

RBM_HD uint64_t philox_key(uint32_t seed, Purpose purpose) {
  return static_cast<uint64_t>(seed) | (static_cast<uint64_t>(purpose) << 32);
}

// A draw is named by (key, stream, phase, unit): word unit % 4 of
// philox(counter = (unit / 4, phase, stream_lo, stream_hi), key). The stream is an iteration
// (training), a row of a minibatch update, or a chain (sampling, AIS); the phase says which step of
// it (host/backend.hpp and host/minibatch.hpp list them); the unit is the unit drawn.
// On the device this is cuRAND's curand_init(key, stream, 4 n) then curand4, n = (phase << 32) |
// block; the offset 4 n wraps mod 2^64 for phases >= 2^30, so kernels/philox_device.cuh adds
// n's top bits as skipaheads (philox_words there).
RBM_HD PhiloxBlock philox_block(uint64_t key, uint64_t stream, uint32_t phase, uint32_t block) {
  const uint32_t counter[4] = {block, phase, static_cast<uint32_t>(stream),
                               static_cast<uint32_t>(stream >> 32)};
  const uint32_t key_words[2] = {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)};
  return philox4x32_10(counter, key_words);
}

// Word i (0..3) of a block, by selects: indexing the array with a run-time i would put the block
// in the device's local memory.
RBM_HD uint32_t philox_word(const PhiloxBlock& r, uint32_t i) {
  const uint32_t low = (i & 1) != 0 ? r.word[1] : r.word[0];
  const uint32_t high = (i & 1) != 0 ? r.word[3] : r.word[2];
  return (i & 2) != 0 ? high : low;
}

RBM_HD float philox_uniform(uint64_t key, uint64_t stream, uint32_t phase, uint32_t unit) {
  return uniform_from_bits(philox_word(philox_block(key, stream, phase, unit / 4), unit % 4));
}

}  // namespace rbm
