// The one place where the kernels tell binary hidden units from ternary ones (host/model.hpp's
// HiddenType): the unit's mean E[h | t] (sigmoid or G(t)), its draw from a uniform, its AIS
// increment. Kernels take the type as a template parameter, picked once per launch by
// host/hidden_units.hpp's with_hidden_type, so that no hot loop branches on it. Visible units are
// always binary: their launches pass HiddenType::binary.
#pragma once

#include "host/hidden_units.hpp"
#include "host/model.hpp"
#include "kernels/rbm_math.h"

namespace rbm::cuda {

// E[h | t]: sigm(t) for binary units, G(t) = 2 sinh t / (1 + 2 cosh t) for ternary ones.
template <HiddenType kType>
__device__ __forceinline__ float unit_mean(float t) {
  if constexpr (kType == HiddenType::ternary) {
    return rbm::ternary_mean(t);
  } else {
    return rbm::sigmoid(t);
  }
}

// The unit's draw from the uniform u given t and mean = unit_mean<kType>(t): binary 1 when
// u < sigm(t), as before; ternary ternary_draw(u, t) in {-1, 0, 1} (the mean is not needed).
template <HiddenType kType>
__device__ __forceinline__ float unit_draw(float u, float t, float mean) {
  if constexpr (kType == HiddenType::ternary) {
    return rbm::ternary_draw(u, t);
  } else {
    return rbm::bernoulli(u, mean);
  }
}

// The draw when the mean is not otherwise needed (binary computes sigm(t) for it).
template <HiddenType kType>
__device__ __forceinline__ float unit_draw(float u, float t) {
  if constexpr (kType == HiddenType::ternary) {
    return rbm::ternary_draw(u, t);
  } else {
    return rbm::bernoulli(u, rbm::sigmoid(t));
  }
}

// The units 4 group .. 4 group + 3 (those below `units`) of row `row` of pre (rows, units), the
// fused pass after a product: t = pre[row, u] + bias[u] (bias may be null), p = unit_mean(t);
//   prob[row, u] = scale p                        when prob is not null,
//   sample[row, u] = unit_draw(uniform of words[u % 4], t, p)  when sample is not null.
// prob and sample may be pre itself: each element is read before it is written, by this thread.
template <HiddenType kType>
__device__ __forceinline__ void group_of_units(const float* pre, const float* __restrict__ bias,
                                               int64_t row, int units, int group,
                                               const uint32_t (&words)[4], float* prob, float scale,
                                               float* sample) {
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const int unit = 4 * group + w;
    if (unit >= units) break;
    const int64_t at = row * units + unit;
    const float t = bias != nullptr ? pre[at] + bias[unit] : pre[at];
    const float p = unit_mean<kType>(t);
    if (prob != nullptr) prob[at] = scale * p;
    if (sample != nullptr) sample[at] = unit_draw<kType>(rbm::uniform_from_bits(words[w]), t, p);
  }
}

// A hidden unit's log-partition term at t1 less that at t2 (AIS's increments, host/ais.hpp):
// softplus(t1) - softplus(t2) binary, log(1 + 2 cosh t1) - log(1 + 2 cosh t2) ternary, by the
// same stable formulas as the CPU's (kernels/rbm_math.h).
template <HiddenType kType>
__device__ __forceinline__ double unit_log_term_difference(double t1, double t2) {
  if constexpr (kType == HiddenType::ternary) {
    return rbm::log_one_plus_two_cosh_difference(t1, t2);
  } else {
    return rbm::softplus_difference(t1, t2);
  }
}

}  // namespace rbm::cuda
