// rbm_cuda's backend: the CUDA one, or BackendUnavailable saying why no device is usable (main
// then says that rbm_cpu is the CPU build and exits with code 2).
#include "kernels/cuda_backend.hpp"

namespace rbm {

std::unique_ptr<Backend> make_backend() { return make_cuda_backend(); }
std::string program_name() { return "rbm_cuda"; }

}  // namespace rbm
