// The one main of rbm_cpu and rbm_cuda; they differ only in the backend they link.
#include "host/cli.hpp"
#include "host/openblas_kernels.hpp"

// run_cli also checks that standard output was written (host/cli.cpp).
int main(int argc, char** argv) {
  rbm::rerun_with_openblas_kernels(argv);  // returns unless OpenBLAS chose its generic kernels
  return rbm::run_cli(argc, argv);
}
