// rbm_cpu's backend: the CPU reference.
#include "host/backend.hpp"

namespace rbm {

std::unique_ptr<Backend> make_backend() { return make_cpu_backend(); }
std::string program_name() { return "rbm_cpu"; }

}  // namespace rbm
