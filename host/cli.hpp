// The command line shared by rbm_cpu and rbm_cuda (CLI11). Exit codes: 0 success, 2 bad input
// (flag, file, data, output directory, or no usable device), 3 divergence, 1 internal error.
#pragma once

namespace rbm {

constexpr int kExitBadInput = 2;
constexpr int kExitDiverged = 3;

int run_cli(int argc, char** argv);

}  // namespace rbm
