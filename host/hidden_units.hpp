// The hidden unit's math by type (design.md, "The model"), for host code that branches once per
// call on Params::hidden_type and then runs a loop specialized for that type:
//   binary   h in {0, 1}:     log sum_h exp(h t) = softplus(t),          E[h | t] = sigm(t)
//   ternary  h in {-1, 0, 1}: log sum_h exp(h t) = log(1 + 2 cosh t),   E[h | t] = G(t)
// The float functions and the draws are kernels/rbm_math.h's, shared with the CUDA build.
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include "host/model.hpp"
#include "kernels/rbm_math.h"

namespace rbm {

template <HiddenType T>
using HiddenTypeTag = std::integral_constant<HiddenType, T>;

// Calls body(HiddenTypeTag<type>{}): the body's loops see the type as a compile-time constant
// (decltype(tag)::value), so the binary loops stay what they were.
template <typename Body>
decltype(auto) with_hidden_type(HiddenType type, Body&& body) {
  if (type == HiddenType::ternary) {
    return std::forward<Body>(body)(HiddenTypeTag<HiddenType::ternary>{});
  }
  return std::forward<Body>(body)(HiddenTypeTag<HiddenType::binary>{});
}

// log sum over one unit's values s of exp(s t), in double: the unit's term in -F(x).
template <HiddenType T>
double hidden_log_sum(double t) {
  if constexpr (T == HiddenType::ternary) {
    return log_one_plus_two_cosh(t);
  } else {
    return softplus(t);
  }
}

// E[h | t] in double: sigm(t), or G(t) = sign(t) (1 - e^2) / (1 + e + e^2), e = exp(-|t|), with
// 1 - e^2 = -expm1(-2|t|) (kernels/rbm_math.h's ternary_mean in double).
template <HiddenType T>
double hidden_mean(double t) {
  if constexpr (T == HiddenType::ternary) {
    const double e = std::exp(-std::fabs(t));
    return std::copysign(-std::expm1(-2.0 * std::fabs(t)) / (1.0 + e + e * e), t);
  } else {
    return 1.0 / (1.0 + std::exp(-t));
  }
}

// E[h | t] in float, as the trainers compute it: sigmoid(t) or ternary_mean(t).
template <HiddenType T>
float hidden_mean_f(float t) {
  if constexpr (T == HiddenType::ternary) {
    return ternary_mean(t);
  } else {
    return sigmoid(t);
  }
}

}  // namespace rbm
