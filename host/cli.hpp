// The command line shared by rbm_cpu and rbm_cuda (CLI11). Exit codes: 0 success, 2 bad input
// (flag, file, data, output directory, or no usable device), 3 divergence, 1 internal error.
#pragma once

namespace rbm {

constexpr int kExitBadInput = 2;
constexpr int kExitDiverged = 3;

// Runs the command of argv and returns its exit code; one that printed its result, or part of it,
// to a standard output that could not be written (a full disk, a closed pipe) exits 2 all the same,
// with a line that says so and what was written nonetheless.
int run_cli(int argc, char** argv);

}  // namespace rbm
