// The math both builds share, as __host__ __device__ inline functions: a branch-free exp for
// non-positive arguments, the stable sigmoid, softplus, the ternary unit's G(t) and log(1+2cosh t),
// and draws (Bernoulli, ternary, uniform index) from given uniforms. Tested on the CPU
// (tests/test_math.cpp); the CUDA kernels call the same functions, so both builds compute the
// same probabilities up to FMA contraction.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define RBM_HD __host__ __device__ __forceinline__
#else
#define RBM_HD inline
#endif

namespace rbm {

// Reinterprets a float's bits as int32 and back, legal in host and device code.
RBM_HD float float_from_bits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}
RBM_HD uint32_t bits_from_float(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
#endif
}

// exp(x) for x <= 0, in the Cephes expf scheme (range reduction by ln 2 in two parts, degree-5
// polynomial, scaling by 2^n through the exponent bits): about 1 ulp, no branches, so that the
// compiler vectorizes loops over it. Arguments below ln(FLT_MIN) = -87.3365 (where exp(x) leaves
// the normal floats) give 0, and so does -inf; NaN gives NaN.
RBM_HD float exp_nonpositive(float x) {
  constexpr float kLowest = -87.3365447f;  // ln(FLT_MIN)
  const bool underflow = x < kLowest;
  x = x < kLowest ? kLowest : x;
  x = x > 0.0f ? 0.0f : x;
  // n = round(x / ln 2), as floor(x * log2(e) + 1/2); x in [-87.33, 0] so n in [-126, 0].
  const float n = floorf(x * 1.44269504088896341f + 0.5f);
  // r = x - n ln 2 with ln 2 = 0.693359375 - 2.12194440e-4 (the first part exact in float).
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  // 2^n through the exponent bits, n + 127 in [1, 127]. n's integer value comes from the low bits
  // of n + 1.5 * 2^23 (exact for |n| < 2^22), not from a conversion to int, which would be
  // undefined for NaN: NaN's bits give some scale, and y is NaN.
  const uint32_t biased = bits_from_float(n + 12582912.0f) - 0x4B400000u + 127u;
  const float scale = float_from_bits(static_cast<int32_t>(biased << 23));
  const float result = y * scale;
  return underflow ? 0.0f : result;
}

// e^x - 1 for x <= 0, within 2 ulp (test_math), no branches (loops over it vectorize, where
// libm's expm1f kept the ternary units' loops scalar): the Taylor series to x^9 for x > -1/2,
// where e^x - 1 would lose its digits (the next term is below 2e-9 of the result), and
// exp_nonpositive(x) - 1 below, where e^x <= 0.61 leaves 1 - e^x >= 0.39 with all its digits.
// -inf gives -1, NaN gives NaN.
RBM_HD float expm1_nonpositive(float x) {
  float p = 1.0f / 362880.0f;  // 1/9!
  p = p * x + 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float series = x == 0.0f ? x : x + (x * x) * p;  // -0 stays -0 (-0 + +0 is +0)
  const float from_exp = exp_nonpositive(x) - 1.0f;
  return x > -0.5f ? series : from_exp;
}

// Logistic sigmoid 1 / (1 + exp(-t)) that never overflows: with e = exp(-|t|) <= 1,
// sigm(t) = 1 / (1 + e) for t >= 0 and e / (1 + e) for t < 0. sigm(+inf) = 1, sigm(-inf) = 0,
// NaN stays NaN. Relative error a few ulp where the result is a normal float (test_math).
RBM_HD float sigmoid(float t) {
  const float abs_t = t < 0.0f ? -t : t;
  const float e = exp_nonpositive(-abs_t);
  const float s = 1.0f / (1.0f + e);
  const float result = t < 0.0f ? e * s : s;
  return t != t ? t : result;  // NaN in, NaN out
}

// log(1 + exp(t)) = max(t, 0) + log1p(exp(-|t|)), for free energies.
RBM_HD double softplus(double t) {
  const double abs_t = t < 0.0 ? -t : t;
  return (t > 0.0 ? t : 0.0) + log1p(exp(-abs_t));
}

// softplus(t1) - softplus(t2) for t1, t2 of the same sign (AIS's beta u and beta' u), with one
// log1p: max(t1, 0) - max(t2, 0) + log((1 + e1) / (1 + e2)), e = exp(-|t|), where
// (1 + e1) / (1 + e2) = 1 + (e1 - e2) / (1 + e2) keeps its precision when t1 is close to t2.
RBM_HD double softplus_difference(double t1, double t2) {
  const double e1 = exp(-(t1 < 0.0 ? -t1 : t1)), e2 = exp(-(t2 < 0.0 ? -t2 : t2));
  return ((t1 > 0.0 ? t1 : 0.0) - (t2 > 0.0 ? t2 : 0.0)) + log1p((e1 - e2) / (1.0 + e2));
}

// Ternary hidden units (h in {-1, 0, 1}), p(h = s | t) proportional to exp(s t).
// log(1 + 2 cosh t) = |t| + log(1 + e + e^2) with e = exp(-|t|): no overflow for any t.
RBM_HD double log_one_plus_two_cosh(double t) {
  const double abs_t = t < 0.0 ? -t : t;
  const double e = exp(-abs_t);
  return abs_t + log1p(e + e * e);
}

// log(1 + 2 cosh t1) - log(1 + 2 cosh t2) (AIS's beta u and beta' u; any signs, cosh being even):
// |t1| - |t2| + log((1 + e1 + e1^2) / (1 + e2 + e2^2)), e = exp(-|t|), with the ratio written as
// 1 + (e1 - e2)(1 + e1 + e2) / (1 + e2 + e2^2) so that it keeps its precision when t1 is close to
// t2 (as softplus_difference does for binary units).
RBM_HD double log_one_plus_two_cosh_difference(double t1, double t2) {
  const double a1 = t1 < 0.0 ? -t1 : t1, a2 = t2 < 0.0 ? -t2 : t2;
  const double e1 = exp(-a1), e2 = exp(-a2);
  return (a1 - a2) + log1p((e1 - e2) * (1.0 + e1 + e2) / (1.0 + e2 + e2 * e2));
}

// G(t) = E[h | t] = 2 sinh t / (1 + 2 cosh t) = (1 - e^2) / (1 + e + e^2) * sign(t),
// e = exp(-|t|): the ternary unit's mean, which replaces sigm(t) in the gradient. 1 - e^2 is
// -expm1(-2|t|) (expm1_nonpositive), which keeps its relative precision as t -> 0.
RBM_HD float ternary_mean(float t) {
  const float abs_t = t < 0.0f ? -t : t;
  const float e = exp_nonpositive(-abs_t);
  const float g = -expm1_nonpositive(-2.0f * abs_t) / (1.0f + e + e * e);
  const float result = t < 0.0f ? -g : g;
  return t != t ? t : result;
}

// A Bernoulli(p) draw from a uniform u in (0, 1]: 1 when u < p. Near 1 the uniform's floats are
// 2^-24 apart, and u = 1.0f has probability 2^-25 (its 128 words, uniform_from_bits), so an outcome
// rarer than that on the side of u near 1 (0 when p rounds to 1; the ternary draw's -sign(t) when
// p_sign + p_zero does) comes with probability up to 3e-8 instead of its own (e^-t): a floor far
// below what any statistic of a run can see, kept because moving the rare outcome to u's small end
// (resolution 2^-33) would change every trajectory and every figure measured on them.
RBM_HD float bernoulli(float u, float p) { return u < p ? 1.0f : 0.0f; }

// A ternary draw h in {-1, 0, 1} with P(h = s) proportional to exp(s t), from a uniform u.
// With e = exp(-|t|), the probabilities of (sign(t), 0, -sign(t)) are (1, e, e^2) / (1 + e + e^2).
RBM_HD float ternary_draw(float u, float t) {
  const float abs_t = t < 0.0f ? -t : t;
  const float e = exp_nonpositive(-abs_t);
  const float norm = 1.0f + e + e * e;
  const float p_sign = 1.0f / norm;
  const float p_zero = e / norm;
  const float sign = t < 0.0f ? -1.0f : 1.0f;
  return u < p_sign ? sign : (u < p_sign + p_zero ? 0.0f : -sign);
}

// curand_uniform's map of a 32-bit word x to (0, 1]: x * 2^-32 + 2^-33 in float (the product is
// exact, so a fused multiply-add gives the same float).
RBM_HD float uniform_from_bits(uint32_t x) {
  return static_cast<float>(x) * 2.3283064365386963e-10f + 1.1641532182693481e-10f;
}

// An index in [0, n) from a 32-bit word: floor(x * n / 2^32). Its bias is below n / 2^32
// (under 2e-6 for all of MNIST), far under what any test or training run can see.
RBM_HD uint32_t index_from_bits(uint32_t x, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(x) * n) >> 32);
}

}  // namespace rbm
