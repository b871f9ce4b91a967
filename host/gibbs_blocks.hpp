// The many-chain sampler the way `sample` runs it (host/cmd_sample.cpp) and `bench_all` times it:
// the chains in blocks of block_chains, each block's steps in pieces of about piece_seconds, with a
// call after every piece (where `sample` looks at the stop signals and redraws its progress).
// The draws are named by the global chain and step (host/backend.hpp), so the blocks and pieces
// give the states one Backend::gibbs call over all chains gives (on the GPU within the rounding of
// a GEMM of another shape).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "host/backend.hpp"
#include "host/progress.hpp"

namespace rbm {

// Chains per block: about 2e9 / (d H) (one step of a block is about 8 GFLOP: 0.15 s on two cores;
// 28672 chains at d 784, H 100), rounded up to a multiple of 4096 chains, and at most 2^26 units
// (64 MiB of states; 81920 chains at d 784, so up to H 32), rounded down to a multiple of 4096, but
// at least 4096 chains. So a stop request waits for one block's step at most; `sample` holds one
// block's states at a time; the blocks keep the CPU's tiles of kSampleTile chains where one call
// puts them; and the split depends on the model alone, not on timing (the same GEMM shapes on the
// GPU in every run, so the same states).
int64_t sample_block_chains(int visible, int hidden);

struct GibbsBlocks {
  int64_t block_chains = 0;     // chains per Backend::gibbs call (> 0)
  double piece_seconds = 0.05;  // the pieces' target length (host/progress.hpp PieceSizer)
};

// Chains [0, chains) read after each of `steps` (ascending, each in 1..K): the pieces of the blocks
// that hold them end at those steps, and at_step(step, first_chain, states) gets the states of
// those of them in the block ((rows, d) row-major, from chain first_chain). `sample` reads the free
// energies of its first chains so (host/mixing.hpp).
struct ChainReads {
  int64_t chains = 0;
  std::vector<int64_t> steps;
  std::function<void(int64_t step, int64_t first_chain, std::span<const uint8_t> states)> at_step;
};

// The blocks one after another, for a caller that holds one block's states at a time (`sample`
// streams each block to its output as it finishes): the same states as gibbs_in_blocks, and without
// reads the same pieces and after_piece calls (reads end pieces at their steps). The piece sizer
// carries over from block to block.
class GibbsBlockRun {
 public:
  // `steps` Gibbs steps x -> h -> x' of each of n_chains chains, from step 0, draws keyed by
  // `seed`. after_piece(done) runs after every piece with the chain-steps done so far; it stops the
  // sampling by throwing.
  // `reads`, when given, reads chains along the way (ChainReads).
  GibbsBlockRun(Backend& backend, int64_t n_chains, int visible, uint32_t seed, int64_t steps,
                const GibbsBlocks& blocks, std::function<void(int64_t done)> after_piece = {},
                ChainReads reads = {});

  // Whether every block has run; else the next block's first chain and number of chains.
  bool finished() const { return next_first_ >= n_chains_; }
  int64_t next_first() const { return next_first_; }
  int64_t next_count() const;

  // Runs the next block: `states` ((next_count(), d) row-major, 0/1 bytes) holds its start states
  // and gets its final ones.
  void run_next(std::span<uint8_t> states);

 private:
  Backend& backend_;
  int64_t n_chains_, steps_;
  int visible_;
  uint32_t seed_;
  int64_t block_chains_;
  PieceSizer pieces_;
  std::function<void(int64_t)> after_piece_;
  ChainReads reads_;
  int64_t next_first_ = 0;
  int64_t done_ = 0;  // chain-steps
};

// `steps` Gibbs steps x -> h -> x' of the n_chains chains in `states` ((n_chains, d) row-major,
// 0/1 bytes), from step 0, draws keyed by `seed`, a block at a time (GibbsBlockRun).
void gibbs_in_blocks(Backend& backend, std::span<uint8_t> states, int64_t n_chains, int visible,
                     uint32_t seed, int64_t steps, const GibbsBlocks& blocks,
                     const std::function<void(int64_t done)>& after_piece = {});

}  // namespace rbm
