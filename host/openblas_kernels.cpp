#include "host/openblas_kernels.hpp"

#include <cblas.h>  // openblas_get_corename
#include <strings.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace rbm {

std::string openblas_kernels_to_choose(std::string_view chosen) {
  const char* set = std::getenv("OPENBLAS_CORETYPE");
  if (set != nullptr && *set != '\0') return "";
  if (strcasecmp(std::string(chosen).c_str(), "Prescott") != 0) return "";
  // libgcc's checks include the operating system's support for the 512-bit registers.
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  return avx512 ? "SkylakeX" : "Haswell";
}

void rerun_with_openblas_kernels(char** argv) {
  const char* pretended = std::getenv("RBM_TEST_OPENBLAS_CORENAME");
  const char* chosen =
      pretended != nullptr && *pretended != '\0' ? pretended : openblas_get_corename();
  const std::string kernels = openblas_kernels_to_choose(chosen != nullptr ? chosen : "");
  if (kernels.empty() || setenv("OPENBLAS_CORETYPE", kernels.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // the exec failed: this run goes on as it was
}

}  // namespace rbm
