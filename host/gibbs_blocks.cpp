#include "host/gibbs_blocks.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "host/cpu_kernels.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/numeric.hpp"
#include "host/progress.hpp"

namespace rbm {

namespace {

constexpr int64_t kChainBlockQuantum = 4096;
static_assert(kChainBlockQuantum % cpu::kSampleTile == 0);

}  // namespace

// Declared in host/backend.hpp, beside the naming of the draws it follows. The chains are split
// over the hardware threads, each chain's uniforms drawn by cpu::philox_uniforms (AVX2 Philox
// blocks). A million chains are 822 M draws: measured in one run on the 2-core development machine
// (load average 2.3), 12.7 s with a Philox block per unit on one thread, 4.5 s with a scalar block
// per four units on both cores, 3.1 s so.
std::vector<uint8_t> random_initial_states(int64_t n_chains, int d, uint32_t seed) {
  std::vector<uint8_t> states(static_cast<size_t>(n_chains) * static_cast<size_t>(d));
  random_initial_states(states, 0, n_chains, d, seed);
  return states;
}

void random_initial_states(std::span<uint8_t> states, int64_t first_chain, int64_t n_chains, int d,
                           uint32_t seed) {
  if (first_chain < 0 || n_chains < 0 ||
      states.size() != static_cast<size_t>(n_chains) * static_cast<size_t>(d)) {
    throw std::invalid_argument("random_initial_states: bad chain range or states size");
  }
  const uint64_t key = philox_key(seed, Purpose::sample);
  parallel_for(n_chains, [&](int64_t, int64_t begin, int64_t end) {
    std::vector<float> uniforms(static_cast<size_t>(d));
    for (int64_t c = begin; c < end; ++c) {
      cpu::philox_uniforms(key, static_cast<uint64_t>(first_chain + c), kInitPhase, 0, d,
                           uniforms.data());
      uint8_t* row = states.data() + static_cast<size_t>(c) * static_cast<size_t>(d);
      for (int i = 0; i < d; ++i) row[i] = static_cast<uint8_t>(uniforms[i] < 0.5f);
    }
  });
}

int64_t sample_block_chains(int visible, int hidden) {
  const int64_t units = static_cast<int64_t>(visible) * std::max(hidden, 1);
  const int64_t wanted = (2'000'000'000 + units - 1) / units;
  return (wanted + kChainBlockQuantum - 1) / kChainBlockQuantum * kChainBlockQuantum;
}

void gibbs_in_blocks(Backend& backend, std::span<uint8_t> states, int64_t n_chains, int visible,
                     uint32_t seed, int64_t steps, const GibbsBlocks& blocks,
                     const std::function<void(int64_t done)>& after_piece) {
  if (blocks.block_chains <= 0 || n_chains < 0 || steps < 0 ||
      states.size() != static_cast<size_t>(n_chains) * static_cast<size_t>(visible)) {
    throw std::invalid_argument("gibbs_in_blocks: bad block size, counts or states size");
  }
  PieceSizer pieces(blocks.piece_seconds);
  int64_t done = 0;
  for (int64_t first = 0; first < n_chains && steps > 0; first += blocks.block_chains) {
    const int64_t in_block = std::min(blocks.block_chains, n_chains - first);
    const std::span<uint8_t> block_states =
        states.subspan(static_cast<size_t>(first) * static_cast<size_t>(visible),
                       static_cast<size_t>(in_block) * static_cast<size_t>(visible));
    for (int64_t step = 0; step < steps;) {
      const int64_t count = std::min(pieces.next(), steps - step);
      const auto start = std::chrono::steady_clock::now();
      backend.gibbs(block_states, in_block, seed, step, count, first);
      step += count;
      done += in_block * count;
      pieces.took(count,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      if (after_piece) after_piece(done);
    }
  }
}

}  // namespace rbm
