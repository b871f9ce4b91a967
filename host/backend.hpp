// The one backend interface (design.md, "Layers"): coarse-grained, so that a backend may run a
// whole loop in one kernel. The CPU backend (host/cpu_backend.cpp) is the reference; the CUDA
// backend (kernels/cuda_backend.cu) is tested against it.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"

namespace rbm {

// How the draws of single-sample CD-k are named (kernels/philox.h): key (seed, Purpose::train),
// stream = iteration t, and
//   phase 0           word 0 of block 0: the image index, index_from_bits(word, rows)
//   phase 1 + 2 s     the hidden draw of Gibbs step s (units 0..H-1), s = 0..k-1
//   phase 2 + 2 s     the visible draw of Gibbs step s (units 0..d-1)
// The many-chain sampler: key (seed, Purpose::sample), stream = chain c, and for global step s
//   phase 2 s         the hidden draw,   phase 2 s + 1   the visible draw,
//   phase kInitPhase  the random initial state (Bernoulli(1/2) per visible unit).
constexpr uint32_t train_index_phase() { return 0; }
constexpr uint32_t train_hidden_phase(int step) { return 1 + 2 * static_cast<uint32_t>(step); }
constexpr uint32_t train_visible_phase(int step) { return 2 + 2 * static_cast<uint32_t>(step); }
constexpr uint32_t sample_hidden_phase(int64_t step) { return static_cast<uint32_t>(2 * step); }
constexpr uint32_t sample_visible_phase(int64_t step) {
  return static_cast<uint32_t>(2 * step + 1);
}
constexpr uint32_t kInitPhase = 0xFFFFFFFFu;

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
  // parameters, from global step first_step on. states is (n_chains, d), each 0 or 1, in place.
  virtual void gibbs(std::vector<uint8_t>& states, int64_t n_chains, uint32_t seed,
                     int64_t first_step, int64_t steps) = 0;
};

// Each executable links exactly one definition: host/cpu_backend_factory.cpp for rbm_cpu,
// kernels/cuda_backend_factory.cpp for rbm_cuda. The CUDA one throws BackendUnavailable when no
// device is usable.
struct BackendUnavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};
std::unique_ptr<Backend> make_backend();
std::string program_name();  // "rbm_cpu" or "rbm_cuda"

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace rbm
