// Minibatch CD-k / PCD-k and the many-chain sampler on the device (issue 5): cuBLAS SGEMMs for the
// pre-activations and the gradient, one fused kernel pre-activation + bias -> sigmoid -> Bernoulli
// (G(t) and the ternary draw for a ternary model's hidden units) after each GEMM (in place), the
// epoch permutation sorted on the device (CUB), and the update with momentum and weight decay in
// one kernel. The meaning is host/minibatch.hpp's; the draws are named as on the CPU (philox.h's
// philox_block, the function cuRAND's device Philox computes), so both builds agree draw for draw.
// Includable from plain C++: no kernels here, only launchers and owned state. Shapes: W (d, H)
// row-major; chain states (n, d) row-major.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "host/minibatch.hpp"
#include "host/model.hpp"
#include "kernels/device_memory.cuh"

namespace rbm::cuda {

// The model on the device and where to work: blas runs on `stream` (the caller set it).
struct ModelView {
  cublasHandle_t blas = nullptr;
  cudaStream_t stream = nullptr;
  float* W = nullptr;  // (d, H)
  float* b = nullptr;  // (H)
  float* a = nullptr;  // (d), null without visible bias
  int d = 0, H = 0;
  HiddenType hidden_type = HiddenType::binary;  // ternary: hidden states -1/0/1, means G(t)
};

// How Backend::gibbs runs on the device.
struct SamplerOptions {
  int64_t batch_chains = 0;  // chains per batch; 0: all at once
  bool packed = false;       // transfer states as bits (8 units per byte) instead of bytes
  bool tf32 = false;         // TF32 tensor cores for the two GEMMs (fp32 otherwise)
};

// Device bytes the sampler allocates for `chains` chains at a time: x (chains, d) and h
// (chains, H) floats, and the transfer buffer (bytes or bits).
size_t sampler_bytes(int64_t chains, int d, int H, bool packed);

// `steps` sampler steps on device-resident chains, enqueued on view.stream with no host
// synchronization: X (n, d) 0/1 floats in place, Hs (n, H) scratch (0/1, or -1/0/1 ternary); row r
// is chain first_chain + r, its draws key, stream first_chain + r, phases sample_hidden_phase(g) /
// sample_visible_phase(g) at global step g from first_step on.
void sample_steps(const ModelView& view, uint64_t key, float* X, float* Hs, int64_t n,
                  int64_t first_chain, int64_t first_step, int64_t steps);

// Backend::gibbs: host states (n_chains, d) of 0/1 in place. The memory needed is checked
// against the free device memory before allocating; too much throws InputError saying how much.
void gibbs_host_states(const ModelView& view, std::span<uint8_t> states, int64_t n_chains,
                       uint64_t key, int64_t first_step, int64_t steps, int64_t first_chain,
                       const SamplerOptions& options);

// Epoch e's permutation of [0, rows) computed and sorted on the device (for the test against
// host/minibatch.hpp's epoch_permutation).
std::vector<uint32_t> device_epoch_permutation(uint32_t seed, int64_t epoch, int64_t rows,
                                               cudaStream_t stream);

// Minibatch training state on the device: momentum velocities, persistent chains, the current
// epoch's order, the update's buffers.
class MinibatchTrainer {
 public:
  // images (rows, d) of 0/1 bytes on the device, resident while training; clears the state.
  void stage(const uint8_t* images, int64_t rows, int d);
  void clear_state();
  // Updates [first, first + count), enqueued with no host synchronization between updates.
  void train(const ModelView& view, const Recipe& recipe, int64_t first, int64_t count);
  TrainingState state(const ModelView& view);
  void set_state(const ModelView& view, const TrainingState& state);

 private:
  void order_for(const ModelView& view, uint32_t seed, int64_t epoch);
  void bias_step(const ModelView& view, float* bias, float* velocity, const float* pos,
                 int64_t n_pos, const float* neg, int64_t n_neg, int units, float pos_scale,
                 float neg_scale, float lr, float momentum);

  const uint8_t* images_ = nullptr;
  int64_t rows_ = 0;
  int d_ = 0;
  int64_t perm_epoch_ = -1;
  uint32_t perm_seed_ = 0;
  DeviceBuffer<uint64_t> keys_, sorted_;  // (rows) shuffle keys; their low words are the order
  DeviceBuffer<uint8_t> sort_temp_;

  bool has_velocity_ = false;
  DeviceBuffer<float> vW_, vb_, va_;
  int64_t n_chains_ = 0;
  DeviceBuffer<float> chains_;  // (n_chains, d) 0/1

  DeviceBuffer<float> X0_, Q0_, Xk_, Qk_, Hs_, G_;
  DeviceBuffer<uint32_t> chain_images_;
  DeviceBuffer<float> ones_;       // (max(B, N)) all 1: the biases' row sums as GEMVs
  DeviceBuffer<float> bias_grad_;  // (max(d, H))
};

}  // namespace rbm::cuda
