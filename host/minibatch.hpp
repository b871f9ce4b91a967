// Minibatch CD-k and PCD-k (issue 5): the schedule both backends share (which images an update
// uses, its learning rate, how its draws are named) and the training state beyond the parameters
// (momentum velocities, persistent chains) that checkpoints carry.
//
// Update u of a run of U updates (U = epochs x batches_per_epoch with --epochs, else iters):
//   data      epoch e = u / P, batch j = u mod P, P = floor(rows / B): the images
//             perm_e[j B .. j B + B) of epoch e's permutation (epoch_permutation). The last
//             rows mod B images of each epoch's permutation are left out of that epoch (a
//             different few each epoch); every batch is whole.
//   positive  PH0 = sigm(X0 W + b)                                          X0 (B, d), PH0 (B, H)
//   negative  CD-k:  row r's chain from x0 = X0[r], draws named (key (seed, train),
//                    stream u B + r, train_hidden_phase(s) / train_visible_phase(s)) for step s,
//                    as single-sample CD names iteration u B + r's draws (host/backend.hpp).
//             PCD-k: the N persistent chains V (N, d) advance k steps, exactly as the many-chain
//                    sampler (Backend::gibbs) does under key (seed, train): chain c is stream c,
//                    global step g = u k + s, phases sample_hidden_phase(g) and
//                    sample_visible_phase(g). Chain c starts (first PCD update after set_params)
//                    at the training image index_from_bits(word 0 of philox_block(key (seed,
//                    train), c, kInitPhase, 0), rows).
//             PHk = sigm(Xk W + b) for the negative samples Xk (the CD chains' ends, or V).
//   gradient  gW = X0' PH0 / B - Xk' PHk / N,  gb = mean(PH0) - mean(PHk),  ga = mean(X0) -
//   mean(Xk)
//             (N = B for CD): means, so a learning rate means the same at any batch size.
//   step      lr_u = lr (linear decay: lr (U - u) / U);  vW = m vW + lr_u (gW - wd W),  W += vW;
//             vb = m vb + lr_u gb, b += vb;  va = m va + lr_u ga, a += va (no decay on biases).
// Ternary hidden units (host/model.hpp): every sigm(. + b) above is G(. + b), and every hidden draw
// is ternary_draw(u, t) from the same uniform u a binary unit would use.
// Velocities start at zero. set_params() and stage() clear the training state; a checkpoint
// restores it with set_training_state() after set_params().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"

namespace rbm {

// What a backend keeps between minibatch updates besides the parameters. Empty vectors mean
// "not yet": zero velocities, chains initialized at the next PCD update.
struct TrainingState {
  std::vector<float> vW;        // (d, H) momentum velocity of W, or empty
  std::vector<float> vb;        // (H), or empty
  std::vector<float> va;        // (d), or empty (also when the model has no visible bias)
  int64_t n_chains = 0;         // PCD chains held
  std::vector<uint8_t> chains;  // (n_chains, d) of 0/1, or empty
  bool operator==(const TrainingState&) const = default;
};

// The part of a backend's state that a resumed run needs: the velocities only with momentum (with
// m = 0 an update overwrites them: v = 0 v + lr (g - wd W)), so a run without momentum writes no
// vW.npy, vb.npy, va.npy, and a checkpoint that has them (written before this rule) loads
// without them.
TrainingState resumable_state(const Recipe& recipe, TrainingState state);

// True when the recipe needs the minibatch path: anything but plain single-sample CD (batch 1,
// no PCD, momentum, weight decay, learning-rate decay or epochs). The plain recipe stays on
// Backend::train_cd, bit for bit as before.
bool uses_minibatch(const Recipe& recipe);
// The flags that select it, as the CLI's help and messages name them.
inline constexpr const char* kMinibatchFlags =
    "--batch > 1, --pcd, --momentum > 0, --weight-decay > 0, --lr-decay linear or --epochs";

// run.json's "algorithm": "cd" (single-sample), "minibatch-cd" or "minibatch-pcd".
std::string algorithm_name(const Recipe& recipe);

// floor(rows / batch): whole batches per epoch.
int64_t batches_per_epoch(const Recipe& recipe, int64_t rows);

// The run's length in updates (minibatch path) or iterations (single-sample path): epochs x
// batches_per_epoch with --epochs, else recipe.iters.
int64_t total_updates(const Recipe& recipe, int64_t rows);

// The learning rate of update u of a run of `total` updates.
float learning_rate_at(const Recipe& recipe, int64_t update, int64_t total);

// The negative phase's sample count N: recipe.chains (default batch) with PCD, batch with CD.
int64_t negative_samples(const Recipe& recipe);

// --weight-decay's largest value (a run.json's recipe.weight_decay too).
constexpr float kMaxWeightDecay = 1000.0f;

// The most Gibbs steps PCD's chains take over a run (updates x k): their draws' phases 2 g and
// 2 g + 1 of global step g stay below kInitPhase (host/backend.hpp) and never repeat.
constexpr int64_t kMaxPcdSteps = (int64_t{1} << 31) - 1;

// Throws InputError when the recipe cannot run on `rows` training images (batch larger than the
// data, chains without PCD, momentum outside [0, 1), negative weight decay, PCD past
// kMaxPcdSteps, ...).
void check_minibatch_recipe(const Recipe& recipe, int64_t rows);

// The 64-bit sort key of image i in epoch e: (word << 32) | i, word = word i % 4 of
// philox_block(key (seed, shuffle), stream e, phase 0, block i / 4). Keys are distinct, so any
// correct sort (std::sort here, CUB's radix sort on the GPU) gives the same order.
uint64_t shuffle_key(uint32_t seed, int64_t epoch, uint32_t index);

// Epoch e's permutation of [0, rows): the indices sorted by shuffle_key.
std::vector<uint32_t> epoch_permutation(uint32_t seed, int64_t epoch, int64_t rows);

// The training image PCD chain c starts from (see above).
uint32_t initial_chain_image(uint32_t seed, int64_t chain, int64_t rows);

// Runs updates [first, first + count) of a recipe on a backend: Backend::train_cd for the plain
// single-sample recipe, Backend::train_minibatch otherwise. The trainer's one call.
class Backend;
void run_updates(Backend& backend, const Recipe& recipe, int64_t first, int64_t count);

}  // namespace rbm
