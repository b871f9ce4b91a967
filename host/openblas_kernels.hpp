// OpenBLAS's kernels on a CPU it does not know. Debian 12's OpenBLAS (0.3.21, built for every
// x86-64 CPU it knows) chooses its kernels as it loads, before main, from the CPU's identity, and
// gives a CPU it does not recognize its generic SSE3 ("Prescott") kernels. On the H200's host (16
// cores with AVX-512, 2026-12-04) it did, and the GEMMs of the sampler, sample, eval and minibatch
// training ran several times slower than its AVX-512 kernels run them (on the development machine,
// OPENBLAS_CORETYPE=Prescott took the sampler at H 500 from 1.65e5 to 7.5e4 chain-steps/s). This
// build needs AVX2 and FMA, so there a Prescott choice is always such a miss.
#pragma once

#include <string>
#include <string_view>

namespace rbm {

// The kernels OpenBLAS should run here instead of `chosen` (what openblas_get_corename() says it
// chose): "SkylakeX" where the CPU and the operating system run AVX-512 F, CD, BW, DQ and VL, else
// "Haswell" (AVX2 and FMA); empty when `chosen` is not Prescott, or when OPENBLAS_CORETYPE is set
// (a user's choice, and what a run started by rerun_with_openblas_kernels has).
std::string openblas_kernels_to_choose(std::string_view chosen);

// Runs this program again, argv unchanged (execv of /proc/self/exe, the first thing main does),
// with OPENBLAS_CORETYPE set to openblas_kernels_to_choose(openblas_get_corename()) when that is
// not empty; else, or when the exec fails (the program then goes on with the kernels OpenBLAS
// chose), returns. RBM_TEST_OPENBLAS_CORENAME, for the tests only, stands for what OpenBLAS chose.
void rerun_with_openblas_kernels(char** argv);

}  // namespace rbm
