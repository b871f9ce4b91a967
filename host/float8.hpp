// Eight floats as one value for the CPU code's vector loops: g++ and clang turn the arithmetic on
// Float8 into AVX (or NEON) instructions. Loads and stores through memcpy: no alignment needed.
#pragma once

#include <cstring>

namespace rbm::cpu {

typedef float Float8 __attribute__((vector_size(32)));

inline Float8 load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, Float8 v) { std::memcpy(p, &v, sizeof v); }

}  // namespace rbm::cpu
