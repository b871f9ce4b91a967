// The GPU's fp32 FMA peak from the device's attributes (see device_peak.hpp).
#include "kernels/device_peak.hpp"

#include <cuda_runtime.h>

#include <cstdio>

namespace rbm {
namespace {

struct Peak {
  int sms = 0, lanes = 0;
  double clock_hz = 0.0;
  double flops() const { return static_cast<double>(sms) * lanes * 2.0 * clock_hz; }
};

Peak device_peak() {
  Peak peak;
  int major = 0, minor = 0, clock_khz = 0, sms = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    return peak;
  }
  peak.sms = sms;
  peak.lanes = major > 8 || (major == 8 && minor >= 6) ? 128 : 64;
  peak.clock_hz = clock_khz * 1e3;
  return peak;
}

}  // namespace

double cuda_fp32_peak_flops() { return device_peak().flops(); }

std::string cuda_fp32_peak_description() {
  const Peak p = device_peak();
  if (p.sms == 0) return "";
  char text[96];
  std::snprintf(text, sizeof text, "%d SMs x %d lanes x 2 x %.2f GHz = %.1f TFLOP/s", p.sms,
                p.lanes, p.clock_hz / 1e9, p.flops() / 1e12);
  return text;
}

}  // namespace rbm
