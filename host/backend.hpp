// The one backend interface (design.md, "Layers"): coarse-grained, so that a backend may run a
// whole loop in one kernel. The CPU backend (host/cpu_backend.cpp) is the reference; the CUDA
// backend (kernels/cuda_backend.cu) is tested against it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/dataset.hpp"
#include "host/evaluate.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"

namespace rbm {

// How the draws of single-sample CD-k are named (kernels/philox.h): key (seed, Purpose::train),
// stream = iteration t, and
//   phase 0           word 0 of block 0: the image index, index_from_bits(word, rows)
//   phase 1 + 2 s     the hidden draw of Gibbs step s (units 0..H-1), s = 0..k-1
//   phase 2 + 2 s     the visible draw of Gibbs step s (units 0..d-1)
// The many-chain sampler: key (seed, Purpose::sample), stream = chain c, and for global step s
//   phase 2 s         the hidden draw,   phase 2 s + 1   the visible draw,
//   phase kInitPhase  the random initial state (Bernoulli(1/2) per visible unit).
// AIS (host/ais.hpp): key (seed, Purpose::ais), stream = first_stream + run r, and
//   phase 0           the initial visible state x_1 ~ p_0 (units 0..d-1)
//   phase 2 k - 1     the hidden draw of the sweep at beta_k (units 0..H-1), k = 1..K-1
//   phase 2 k         the visible draw of the sweep at beta_k (units 0..d-1)
constexpr uint32_t train_index_phase() { return 0; }
constexpr uint32_t train_hidden_phase(int step) { return 1 + 2 * static_cast<uint32_t>(step); }
constexpr uint32_t train_visible_phase(int step) { return 2 + 2 * static_cast<uint32_t>(step); }
constexpr uint32_t sample_hidden_phase(int64_t step) { return static_cast<uint32_t>(2 * step); }
constexpr uint32_t sample_visible_phase(int64_t step) {
  return static_cast<uint32_t>(2 * step + 1);
}
constexpr uint32_t kInitPhase = 0xFFFFFFFFu;
constexpr uint32_t ais_init_phase() { return 0; }

// The sampler's random initial states (n_chains, d), as named above: unit i of chain c is 1 when
// philox_uniform(key (seed, sample), stream c, kInitPhase, unit i) < 1/2 (host/gibbs_blocks.cpp).
std::vector<uint8_t> random_initial_states(int64_t n_chains, int d, uint32_t seed);
// The same for chains [first_chain, first_chain + n_chains) only, into `states` ((n_chains, d)):
// chain c's state depends on the seed and c alone, so blocks of chains give the states above.
void random_initial_states(std::span<uint8_t> states, int64_t first_chain, int64_t n_chains, int d,
                           uint32_t seed);
constexpr uint32_t ais_hidden_phase(int64_t k) { return static_cast<uint32_t>(2 * k - 1); }
constexpr uint32_t ais_visible_phase(int64_t k) { return static_cast<uint32_t>(2 * k); }

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu" or "cuda"
  virtual std::string device_description() const = 0;

  // Copies the training images to the backend, resident until the next stage().
  virtual void stage(const Dataset& train) = 0;
  virtual void set_params(const Params& params) = 0;
  virtual Params get_params() = 0;

  // Runs iterations [first_iteration, first_iteration + count) of single-sample CD-k with SGD
  // (design.md) on the staged images, updating the parameters in place. Iteration t's draws are
  // named as above, so that running [0, n) in pieces gives the same result as in one call.
  virtual void train_cd(const Recipe& recipe, int64_t first_iteration, int64_t count) = 0;

  // Advances n_chains independent Gibbs chains x -> h -> x' by `steps` steps under the current
  // parameters, from global step first_step on. states is (n_chains, d), each 0 or 1, in place:
  // chains first_chain .. first_chain + n_chains - 1 of a larger set, whose draws are named by
  // their index in that set (so a set run in blocks of chains is the same chains as in one call).
  // Throws std::invalid_argument for a negative count or index, or states of another size.
  virtual void gibbs(std::span<uint8_t> states, int64_t n_chains, uint32_t seed, int64_t first_step,
                     int64_t steps, int64_t first_chain = 0) = 0;

  // Minibatch CD-k / PCD-k (host/minibatch.hpp: data order, draws, gradient, momentum, decay):
  // runs updates [first_update, first_update + count) on the staged images, updating the
  // parameters and the training state in place; in pieces it gives the same result as in one
  // call. Throws InputError for a recipe the staged data cannot run (check_minibatch_recipe).
  virtual void train_minibatch(const Recipe& recipe, int64_t first_update, int64_t count) = 0;
  // The training state (momentum velocities, PCD chains) for checkpoints; set_training_state()
  // after set_params() restores it (set_params() and stage() clear it). Shapes are checked
  // against the current parameters (InputError).
  virtual TrainingState get_training_state() = 0;
  virtual void set_training_state(const TrainingState& state) = 0;

  // Evaluation of the current parameters (host/ais.hpp, host/log_z.hpp).
  // log Z exactly, by enumerating the 2^H hidden states with log-sum-exp in double (H <= 30), or
  // the 3^H of a ternary model (H <= 15). Throws Stopped when request.stop says so: the CPU backend
  // before every piece of kExactStatesPerLook states (host/evaluate.hpp), the CUDA backend before
  // and after its kernel only. request.states_done, when set, is advanced by the states summed: as
  // they are (CPU), or all of them at the end (CUDA).
  virtual double exact_log_partition(const ExactLogZRequest& request = {}) = 0;
  // All request.runs AIS runs over all the temperatures; draws named as above. Throws InputError
  // for a request that does not fit the model, or (CUDA) the device's memory. May throw Stopped
  // when request.stop says so (both backends do, each as often as host/ais.hpp says), or may run
  // the whole request without looking: the caller looks again after it.
  virtual AisResult ais(const AisRequest& request) = 0;
};

// Each executable links exactly one definition: host/cpu_backend_factory.cpp for rbm_cpu,
// kernels/cuda_backend_factory.cpp for rbm_cuda. The CUDA one throws BackendUnavailable when no
// device is usable. `engine` is train's --engine: rbm_cuda's single-sample trainer, "gemv" (cuBLAS
// GEMVs and small kernels) or "fused" (one persistent kernel); empty for the default, fused where
// the device and the model allow it and gemv elsewhere. rbm_cpu has one engine and refuses any
// name. A bad name is an InputError, before any device is touched.
struct BackendUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};
std::unique_ptr<Backend> make_backend(const std::string& engine = "");
// make_backend's check of the engine's name alone (InputError), for a CLI that checks its flags
// before it looks for a device.
void check_engine_name(const std::string& engine);
std::string program_name();  // "rbm_cpu" or "rbm_cuda"

// How the CPU build's single-sample recipe splits its rows of W: over one thread or two, chosen
// by timing as it trains (host/thread_choice.hpp; one when RBM_CPU_THREADS is 1 or the machine has
// one hardware thread), or fixed (tests and benchmarks, which compare the two). The results are
// the same bits either way.
struct CpuOptions {
  int recipe_threads = 0;  // 0: chosen by timing; 1 or 2: fixed
};
std::unique_ptr<Backend> make_cpu_backend(CpuOptions options = {});

}  // namespace rbm
