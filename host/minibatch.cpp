// The minibatch schedule both backends share (see minibatch.hpp).
#include "host/minibatch.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "host/backend.hpp"
#include "host/errors.hpp"
#include "kernels/philox.h"

namespace rbm {

bool uses_minibatch(const Recipe& r) {
  return r.minibatch || r.batch != 1 || r.pcd || r.momentum != 0.0f || r.weight_decay != 0.0f ||
         r.lr_decay != LrDecay::none || r.epochs > 0;
}

std::string algorithm_name(const Recipe& r) {
  return !uses_minibatch(r) ? "cd" : (r.pcd ? "minibatch-pcd" : "minibatch-cd");
}

TrainingState resumable_state(const Recipe& recipe, TrainingState state) {
  if (recipe.momentum == 0.0f) {
    state.vW.clear();
    state.vb.clear();
    state.va.clear();
  }
  return state;
}

int64_t batches_per_epoch(const Recipe& recipe, int64_t rows) {
  return recipe.batch > 0 ? rows / recipe.batch : 0;
}

int64_t total_updates(const Recipe& recipe, int64_t rows) {
  return recipe.epochs > 0 ? recipe.epochs * batches_per_epoch(recipe, rows) : recipe.iters;
}

float learning_rate_at(const Recipe& recipe, int64_t update, int64_t total) {
  if (recipe.lr_decay == LrDecay::none || total <= 0) return recipe.lr;
  const double left = static_cast<double>(std::max<int64_t>(0, total - update));
  return static_cast<float>(static_cast<double>(recipe.lr) * left / static_cast<double>(total));
}

int64_t negative_samples(const Recipe& recipe) {
  return recipe.pcd && recipe.chains > 0 ? recipe.chains : recipe.batch;
}

void check_minibatch_recipe(const Recipe& r, int64_t rows) {
  const auto fail = [](const std::string& what) { throw InputError(what); };
  if (r.batch < 1) fail("--batch must be at least 1 (got " + std::to_string(r.batch) + ")");
  if (r.batch > rows) {
    fail("--batch " + std::to_string(r.batch) + " is larger than the " + std::to_string(rows) +
         " training images");
  }
  if (r.chains < 0) fail("--chains must be at least 1 (got " + std::to_string(r.chains) + ")");
  if (r.chains > 0 && !r.pcd) fail("--chains needs --pcd (CD's chains are the batch)");
  if (!(r.momentum >= 0.0f && r.momentum < 1.0f)) {
    fail("--momentum must be in [0, 1) (got " + std::to_string(r.momentum) + ")");
  }
  if (!(r.weight_decay >= 0.0f && std::isfinite(r.weight_decay))) {
    fail("--weight-decay must be a finite number >= 0 (got " + std::to_string(r.weight_decay) +
         ")");
  }
  if (r.epochs < 0) fail("--epochs must be at least 1 (got " + std::to_string(r.epochs) + ")");
  if (r.k < 1) fail("--k must be at least 1 (got " + std::to_string(r.k) + ")");
  if (rows > int64_t{UINT32_MAX}) fail("too many training images for one run");
  // PCD's chains take the sampler's draws of global steps u k .. u k + k - 1 at update u, named by
  // 32-bit phases 2 g and 2 g + 1 (host/backend.hpp): past 2^31 - 1 steps they would repeat
  // earlier steps' draws (and the last one the start states').
  const int64_t pcd_steps = total_updates(r, rows) * r.k;
  if (r.pcd && pcd_steps > kMaxPcdSteps) {
    fail("--pcd runs its chains at most " + std::to_string(kMaxPcdSteps) +
         " Gibbs steps (the updates times --k; their draws are named by the step): this run has " +
         std::to_string(total_updates(r, rows)) + " x " + std::to_string(r.k) + " = " +
         std::to_string(pcd_steps));
  }
}

uint64_t shuffle_key(uint32_t seed, int64_t epoch, uint32_t index) {
  const uint32_t word =
      philox_block(philox_key(seed, Purpose::shuffle), static_cast<uint64_t>(epoch), 0, index / 4)
          .word[index % 4];
  return (static_cast<uint64_t>(word) << 32) | index;
}

std::vector<uint32_t> epoch_permutation(uint32_t seed, int64_t epoch, int64_t rows) {
  std::vector<uint64_t> keys(static_cast<size_t>(rows));
  const uint64_t key = philox_key(seed, Purpose::shuffle);
  for (int64_t block = 0; 4 * block < rows; ++block) {
    const PhiloxBlock r =
        philox_block(key, static_cast<uint64_t>(epoch), 0, static_cast<uint32_t>(block));
    for (int64_t w = 0; w < 4 && 4 * block + w < rows; ++w) {
      const uint64_t i = static_cast<uint64_t>(4 * block + w);
      keys[i] = (static_cast<uint64_t>(r.word[w]) << 32) | i;
    }
  }
  std::sort(keys.begin(), keys.end());
  std::vector<uint32_t> permutation(keys.size());
  for (size_t p = 0; p < keys.size(); ++p) permutation[p] = static_cast<uint32_t>(keys[p]);
  return permutation;
}

uint32_t initial_chain_image(uint32_t seed, int64_t chain, int64_t rows) {
  const uint32_t word =
      philox_block(philox_key(seed, Purpose::train), static_cast<uint64_t>(chain), kInitPhase, 0)
          .word[0];
  return index_from_bits(word, static_cast<uint32_t>(rows));
}

void run_updates(Backend& backend, const Recipe& recipe, int64_t first, int64_t count) {
  if (uses_minibatch(recipe)) {
    backend.train_minibatch(recipe, first, count);
  } else {
    backend.train_cd(recipe, first, count);
  }
}

}  // namespace rbm
