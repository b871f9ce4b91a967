#include "host/gibbs_blocks.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>
#include <vector>

#include "host/cpu_kernels.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/numeric.hpp"
#include "host/progress.hpp"

namespace rbm {

namespace {

constexpr int64_t kChainBlockQuantum = 4096;
constexpr int64_t kMaxBlockStateUnits = int64_t{1} << 26;
static_assert(kChainBlockQuantum % cpu::kSampleTile == 0);

}  // namespace

// Declared in host/backend.hpp, beside the naming of the draws it follows. The chains are split
// over the threads (cpu_threads(): RBM_CPU_THREADS or the hardware's), each chain's uniforms drawn
// by cpu::philox_uniforms (AVX2 Philox blocks). A million chains are 822 M draws: measured in one
// run on the 2-core development machine (load average 2.3), 12.7 s with a Philox block per unit on
// one thread, 4.5 s with a scalar block per four units on both cores, 3.1 s so.
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
  const int64_t d = std::max(visible, 1);
  const int64_t units = d * std::max(hidden, 1);
  const int64_t wanted = (2'000'000'000 + units - 1) / units;
  const int64_t by_work =
      (wanted + kChainBlockQuantum - 1) / kChainBlockQuantum * kChainBlockQuantum;
  const int64_t by_memory = kMaxBlockStateUnits / d / kChainBlockQuantum * kChainBlockQuantum;
  return std::max(kChainBlockQuantum, std::min(by_work, by_memory));
}

GibbsBlockRun::GibbsBlockRun(Backend& backend, int64_t n_chains, int visible, uint32_t seed,
                             int64_t steps, const GibbsBlocks& blocks,
                             std::function<void(int64_t done)> after_piece, ChainReads reads)
    : backend_(backend),
      n_chains_(n_chains),
      steps_(steps),
      visible_(visible),
      seed_(seed),
      block_chains_(blocks.block_chains),
      pieces_(blocks.piece_seconds),
      after_piece_(std::move(after_piece)),
      reads_(std::move(reads)) {
  if (block_chains_ <= 0 || n_chains < 0 || steps < 0 || visible < 0) {
    throw std::invalid_argument("GibbsBlockRun: bad block size or counts");
  }
  if (reads_.chains < 0 || !std::is_sorted(reads_.steps.begin(), reads_.steps.end()) ||
      (!reads_.steps.empty() && (reads_.steps.front() < 1 || reads_.steps.back() > steps))) {
    throw std::invalid_argument("GibbsBlockRun: read steps not ascending in 1..steps");
  }
}

int64_t GibbsBlockRun::next_count() const {
  return std::min(block_chains_, n_chains_ - next_first_);
}

void GibbsBlockRun::run_next(std::span<uint8_t> states) {
  const int64_t in_block = next_count();
  if (finished() ||
      states.size() != static_cast<size_t>(in_block) * static_cast<size_t>(visible_)) {
    throw std::invalid_argument(
        "GibbsBlockRun::run_next: no block left, or a states size that is "
        "not the block's");
  }
  // The block's chains that are read, and the next step to read them after.
  const int64_t read_rows =
      reads_.at_step ? std::clamp<int64_t>(reads_.chains - next_first_, 0, in_block) : 0;
  auto next_read = read_rows > 0 ? reads_.steps.begin() : reads_.steps.end();
  for (int64_t step = 0; step < steps_;) {
    int64_t count = std::min(pieces_.next(), steps_ - step);
    if (next_read != reads_.steps.end()) count = std::min(count, *next_read - step);
    const auto start = std::chrono::steady_clock::now();
    backend_.gibbs(states, in_block, seed_, step, count, next_first_);
    step += count;
    done_ += in_block * count;
    pieces_.took(count,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    // Steps named twice are read once.
    if (next_read != reads_.steps.end() && *next_read == step) {
      reads_.at_step(step, next_first_,
                     states.first(static_cast<size_t>(read_rows) * static_cast<size_t>(visible_)));
      while (next_read != reads_.steps.end() && *next_read <= step) ++next_read;
    }
    if (after_piece_) after_piece_(done_);
  }
  next_first_ += in_block;
}

void gibbs_in_blocks(Backend& backend, std::span<uint8_t> states, int64_t n_chains, int visible,
                     uint32_t seed, int64_t steps, const GibbsBlocks& blocks,
                     const std::function<void(int64_t done)>& after_piece) {
  if (states.size() != static_cast<size_t>(std::max<int64_t>(n_chains, 0)) *
                           static_cast<size_t>(std::max(visible, 0))) {
    throw std::invalid_argument("gibbs_in_blocks: a states size that is not n_chains x visible");
  }
  GibbsBlockRun run(backend, n_chains, visible, seed, steps, blocks, after_piece);
  while (!run.finished() && steps > 0) {
    run.run_next(
        states.subspan(static_cast<size_t>(run.next_first()) * static_cast<size_t>(visible),
                       static_cast<size_t>(run.next_count()) * static_cast<size_t>(visible)));
  }
}

}  // namespace rbm
