// The GPU's arithmetic limit the benchmarks measure against, includable from plain C++.
#pragma once

#include <string>

namespace rbm {

// Device 0's fp32 FMA peak in FLOP/s: SMs x fp32 lanes per SM (128 from compute capability 8.6
// and 9.0 on, 64 before) x 2 x the peak SM clock. 0 when no device is usable.
double cuda_fp32_peak_flops();

// "132 SMs x 128 lanes x 2 x 1.98 GHz" for the table's footnote; empty when no device is usable.
std::string cuda_fp32_peak_description();

}  // namespace rbm
