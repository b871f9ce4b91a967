// The many-chain sampler the way `sample` runs it (host/cmd_sample.cpp) and `bench_all` times it:
// the chains in blocks of block_chains, each block's steps in pieces of about piece_seconds, with a
// call after every piece (where `sample` looks at SIGINT and SIGTERM and redraws its progress).
// The draws are named by the global chain and step (host/backend.hpp), so the blocks and pieces
// give the states one Backend::gibbs call over all chains gives (on the GPU within the rounding of
// a GEMM of another shape).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "host/backend.hpp"

namespace rbm {

// Chains per block: about 2e9 / (d H) (one step of a block is about 8 GFLOP: 0.15 s on two cores;
// 28672 chains at d 784, H 100), rounded up to a multiple of 4096 chains. So a stop request waits
// for one block's step at most; the blocks keep the CPU's tiles of kSampleTile chains where one
// call puts them; and the split depends on the model alone, not on timing (the same GEMM shapes
// on the GPU in every run, so the same states).
int64_t sample_block_chains(int visible, int hidden);

struct GibbsBlocks {
  int64_t block_chains = 0;     // chains per Backend::gibbs call (> 0)
  double piece_seconds = 0.05;  // the pieces' target length (host/progress.hpp PieceSizer)
};

// `steps` Gibbs steps x -> h -> x' of the n_chains chains in `states` ((n_chains, d) row-major,
// 0/1 bytes), from step 0, draws keyed by `seed`. after_piece(done) runs after every piece with the
// chain-steps done so far; it stops the sampling by throwing.
void gibbs_in_blocks(Backend& backend, std::span<uint8_t> states, int64_t n_chains, int visible,
                     uint32_t seed, int64_t steps, const GibbsBlocks& blocks,
                     const std::function<void(int64_t done)>& after_piece = {});

}  // namespace rbm
