// rbm_cuda's backend: the CUDA one, or BackendUnavailable saying why no device is usable (main
// then says that rbm_cpu is the CPU build and exits with code 2).
#include "host/cpu_threads.hpp"
#include "host/errors.hpp"
#include "host/simd.hpp"
#include "kernels/cuda_backend.hpp"

namespace rbm {

void check_engine_name(const std::string& engine) {
  if (!engine.empty() && engine != "gemv" && engine != "fused") {
    throw InputError("--engine must be gemv or fused (got '" + engine + "')");
  }
}

std::unique_ptr<Backend> make_backend(const std::string& engine) {
  check_engine_name(engine);
  // The host's parallel loops (the pseudo-log-likelihood, sample's start states) take
  // RBM_CPU_THREADS and RBM_CPU_SIMD too: a bad value is refused before any work, not at the
  // first log point.
  (void)forced_cpu_threads();
  (void)cpu::forced_simd();
  // No --engine: fused where the device and the model allow it, else gemv.
  CudaOptions options;
  options.engine = engine == "fused"  ? CudaEngine::fused
                   : engine == "gemv" ? CudaEngine::gemv
                                      : CudaEngine::fused_or_gemv;
  return make_cuda_backend(options);
}
std::string program_name() { return "rbm_cuda"; }

}  // namespace rbm
