// rbm_cpu's backend: the CPU reference.
#include "host/backend.hpp"
#include "host/errors.hpp"

namespace rbm {

void check_engine_name(const std::string& engine) {
  if (!engine.empty()) {
    throw InputError("--engine " + engine +
                     ": rbm_cpu has one engine; gemv and fused are rbm_cuda's");
  }
}

std::unique_ptr<Backend> make_backend(const std::string& engine) {
  check_engine_name(engine);
  return make_cpu_backend();
}
std::string program_name() { return "rbm_cpu"; }

}  // namespace rbm
