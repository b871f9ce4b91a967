// The CPU's GEMM paths (issue 5): the many-chain Gibbs sampler and minibatch CD-k / PCD-k, on
// OpenBLAS sgemm (or, where cheaper, sums of W's rows and sgemv) with the sigmoid and Bernoulli
// draw fused into one pass over each product's output. Work is split into tasks whose boundaries
// depend on the problem's shape only, never on the thread count, and each task's products run on
// one thread: results are bit-identical on any number of threads. Shapes: W (d, H) row-major;
// states and chains (n, d) row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "host/dataset.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"

namespace rbm::cpu {

// Advances n_chains chains by `steps` Gibbs steps x -> h -> x' from global step first_step on,
// states (n_chains, d) of 0/1 in place. Chain c's draws: key, stream first_chain + c, phases
// sample_hidden_phase(g) and sample_visible_phase(g) at global step g (host/backend.hpp), so
// Backend::gibbs is this under key (seed, Purpose::sample). Chains are split into tiles of
// kSampleTile, each tile run through all steps on one thread (its states stay in cache).
constexpr int64_t kSampleTile = 256;
// Thread CPU seconds a sampling spent in each part of its chain-steps, summed over its threads:
// the product to the hidden units (hidden_products), the pass after it (bias, sigmoid or ternary,
// Philox draws), the product back and the visible pass (bench/sampler_lab measures the split).
struct SamplerPartSeconds {
  double hidden_product = 0, pass_hidden = 0, visible_product = 0, pass_visible = 0;
};
// part_seconds, when given, receives the split (two clock reads a part; the states are the same).
void sample_chains(const Params& params, uint64_t key, uint8_t* states, int64_t n_chains,
                   int64_t first_step, int64_t steps, int threads, int64_t first_chain = 0,
                   SamplerPartSeconds* part_seconds = nullptr);

// The pass after a GEMM that the sampler and the trainers make, row r naming stream stream0 + r
// (kernels/gibbs_sample.cuh's DrawNames): for u < n, t = pre[r, u] + bias[u], p = sigm(t);
//   prob[r, u] = p when prob is not null;  sample[r, u] = bernoulli(uniform(r, u), p) when
//   sample is not null. prob and sample may alias pre. uniforms is scratch (n).
void sigmoid_bernoulli_rows(float* pre, int64_t rows, int n, const float* bias, uint64_t key,
                            uint64_t stream0, uint32_t phase, float* prob, float* sample,
                            float* uniforms);

// The two products of a chain step on a tile of rows, each by whichever of two ways costs less
// (cpu_minibatch.cpp gives the measurements); the choice depends on the tile's contents and on
// OpenBLAS's kernel family, never on the thread count.
// out (rows, H) = X (rows, d) W for X of 0/1 floats: each row's sum of the rows of W where it is 1
// when sums_active_rows(the ones in X, rows, d, blas_has_small_matrix_kernels()), else an sgemm.
// active is scratch (d ints).
void hidden_products(const Params& params, const float* X, int64_t rows, float* out, int* active);
// True when summing the active rows costs less than an sgemm with OpenBLAS's kernels of either
// family (cpu_minibatch.cpp gives the measurements): one row at any density; 256 rows under 20%
// ones with small-matrix kernels, under 41% without.
bool sums_active_rows(int64_t ones, int64_t rows, int d, bool small_matrix_kernels);
// Whether OpenBLAS chose its AVX-512 kernels, whose sgemm does not pack small matrices.
bool blas_has_small_matrix_kernels();
// out (rows, d) = Hs (rows, H) W': an sgemv a row for up to kMaxGemvRows rows, else an sgemm.
void visible_products(const Params& params, const float* Hs, int64_t rows, float* out);
constexpr int64_t kMaxGemvRows = 5;

// Minibatch CD-k / PCD-k on the CPU (host/minibatch.hpp gives the meaning). Holds a copy of the
// staged images, the permutation of the current epoch, and the training state.
class MinibatchTrainer {
 public:
  MinibatchTrainer();
  ~MinibatchTrainer();
  MinibatchTrainer(const MinibatchTrainer&) = delete;
  MinibatchTrainer& operator=(const MinibatchTrainer&) = delete;

  void stage(const Dataset& train);  // also clears the training state
  void clear_state();

  // Updates [first, first + count) on params (d must match the staged images).
  void train(Params& params, const Recipe& recipe, int64_t first, int64_t count, int threads);

  TrainingState state() const;
  // Throws InputError when a vector's size does not fit params (empty vectors are allowed).
  void set_state(const Params& params, const TrainingState& state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rbm::cpu
