// Products of many factors and their log, four doubles at a time (GCC vector extensions, AVX2
// registers): the exact pseudo-likelihood, the exact log Z walk and AIS's weights sum logs of
// factors near 1 as the log of one product, which costs one log instead of one log1p per factor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>

namespace rbm {

// Four doubles, four 64-bit integers, four floats as one value: the products below in AVX
// registers.
typedef double Double4 __attribute__((vector_size(32)));
typedef int64_t Int4 __attribute__((vector_size(32)));
typedef uint64_t UInt4 __attribute__((vector_size(32)));
typedef float Float4 __attribute__((vector_size(16)));

// A positive number as mantissa 2^exponent: products of many factors, and exponentials, that a
// double cannot hold.
struct ScaledDouble {
  double mantissa = 0.0;  // 0: no value (ScaledDouble{} where a caller has none)
  int64_t exponent = 0;
};

// Brings each lane of p (a positive normal double) back to [1, 2), adding the powers of two taken
// out to exponent: the lane's value is p 2^exponent, before and after. A lane that is +inf or a
// NaN of either sign (a factor that broke its bound, or NaN parameters: inf - inf gives a NaN with
// the sign bit set) sets its lane of not_finite: it must not pass for a finite value.
inline void normalize_lanes(Double4& p, Int4& exponent, Int4& not_finite) {
  UInt4 bits;
  std::memcpy(&bits, &p, sizeof bits);
  const UInt4 field = bits >> 52;  // sign and biased exponent: the sign is 0 for p > 0
  exponent += __builtin_convertvector(field, Int4) - 1023;
  not_finite |= field >= 0x7FF;
  bits = (bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000;
  std::memcpy(&p, &bits, sizeof p);
}

inline Double4 load4(const double* p) {
  Double4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store4(double* p, Double4 v) { std::memcpy(p, &v, sizeof v); }

// prod_{k < n} factor(k), as mantissa (in [1, 2^16), or NaN) 2^exponent, for factors in
// [e^-max_factor_log, e^max_factor_log], with no exp or log per factor; factor4(k) is the four
// factors k..k+3 at once (k + 3 < n). Each factor is asked for once, in increasing k (by factor4 or
// factor), so that they may update state as they go (exact log Z's walk updates its e^p). The
// factors go 16 at a time into four products of four lanes, so that the multiplications need not
// wait on each other (one running product was several times slower: the exact pseudo-likelihood
// multiplies H factors per pixel and image, exact log Z d per hidden state, AIS H per run and
// temperature). Each lane is brought back to [1, 2) after per_lane of its factors, m = per_lane
// with m max_factor_log <= 708: from [1, 2) it stays below 2 e^708, under DBL_MAX = e^709.78, and
// at or above e^-708, above DBL_MIN = e^-708.40 (a normal double). NaN in, NaN out.
template <typename Factor, typename Factor4>
ScaledDouble product_of(int n, const Factor& factor, const Factor4& factor4,
                        double max_factor_log) {
  const double lanes_bound = max_factor_log > 0.0 ? 708.0 / max_factor_log : 1e6;  // NaN: 1e6
  const int per_lane = static_cast<int>(std::clamp(lanes_bound, 1.0, 1e6));
  Double4 p0 = {1.0, 1.0, 1.0, 1.0}, p1 = p0, p2 = p0, p3 = p0;
  Int4 e0 = {0, 0, 0, 0}, e1 = e0, e2 = e0, e3 = e0;
  Int4 not_finite = e0;
  const auto normalize = [&] {
    normalize_lanes(p0, e0, not_finite);
    normalize_lanes(p1, e1, not_finite);
    normalize_lanes(p2, e2, not_finite);
    normalize_lanes(p3, e3, not_finite);
  };
  int since_normalized = 0;
  int k = 0;
  for (; k + 16 <= n; k += 16) {
    p0 *= factor4(k);
    p1 *= factor4(k + 4);
    p2 *= factor4(k + 8);
    p3 *= factor4(k + 12);
    if (++since_normalized == per_lane) {
      normalize();
      since_normalized = 0;
    }
  }
  // The last n % 16 factors: whole fours into p0, p1, p2, the rest into p3's lanes, so that no
  // lane takes more than one factor beyond the loop's (since_normalized < per_lane).
  Double4* const lanes[3] = {&p0, &p1, &p2};
  for (int quad = 0; k + 4 <= n; ++quad, k += 4) *lanes[quad] *= factor4(k);
  if (k < n) {
    const auto rest = [&](int q) { return k + q < n ? factor(k + q) : 1.0; };
    p3 *= Double4{rest(0), rest(1), rest(2), 1.0};
  }
  normalize();
  if ((not_finite[0] | not_finite[1] | not_finite[2] | not_finite[3]) != 0) {
    return {std::numeric_limits<double>::quiet_NaN(), 0};
  }
  // Sixteen values in [1, 2): their product is below 2^16.
  const Double4 m = (p0 * p1) * (p2 * p3);
  const Int4 e = (e0 + e1) + (e2 + e3);
  return {(m[0] * m[1]) * (m[2] * m[3]), (e[0] + e[1]) + (e[2] + e[3])};
}

// log x, for x = mantissa 2^exponent (NaN for a NaN mantissa).
inline double log_of(ScaledDouble x) {
  return std::log(x.mantissa) + static_cast<double>(x.exponent) * std::numbers::ln2;
}

// log prod_{k < n} factor(k): product_of's, as one log.
template <typename Factor, typename Factor4>
double log_product(int n, const Factor& factor, const Factor4& factor4, double max_factor_log) {
  return log_of(product_of(n, factor, factor4, max_factor_log));
}

// log(1 + x) for x = mantissa 2^exponent given as a ScaledDouble (mantissa positive and finite,
// within a few powers of two of 1 .. 2^20), which may lie far outside the doubles: one log1p (or
// one log) and no exp, for a softplus whose argument's exponential is known as a product.
// Above 2^60, log(1 + x) = log x to within x^-1 < 1e-18; below that, x is a double (subnormal or
// 0 far below 1, where log1p(x) is x). A NaN mantissa gives NaN.
inline double log1p_scaled(ScaledDouble x) {
  if (x.exponent > 60) {
    return std::log(x.mantissa) + static_cast<double>(x.exponent) * std::numbers::ln2;
  }
  const int exponent = static_cast<int>(std::max<int64_t>(x.exponent, -2000));  // -2000: 0 anyway
  return std::log1p(std::ldexp(x.mantissa, exponent));
}

// The largest |x| that scaled_exp takes: k = round(x / ln 2) stays below 2^21, where k ln 2's
// first part is exact and the mantissa within [0.7, 1.42]; beyond it (or for NaN and inf) the
// caller must take another way.
constexpr double kScaledExpMax = 1e6;

// e^x as a ScaledDouble, for |x| <= kScaledExpMax (no overflow or underflow however far e^x lies
// outside the doubles): x = k ln 2 + r, |r| <= ln 2 / 2, k ln 2 split as in exp4 below. Relative
// error 1 ulp of std::exp's, plus what x's own rounding makes of it (|x| 2^-53).
inline ScaledDouble scaled_exp(double x) {
  const double k = std::nearbyint(x * std::numbers::log2e);
  const double r = (x - k * 0x1.62e42fee00000p-1) - k * 0x1.a39ef35793c76p-33;
  return {std::exp(r), static_cast<int64_t>(k)};
}

// a b, of two ScaledDoubles.
inline ScaledDouble operator*(ScaledDouble a, ScaledDouble b) {
  return {a.mantissa * b.mantissa, a.exponent + b.exponent};
}

// e^x in each lane for |x| <= 708, within 2 ulp (tests/test_log_product.cpp, against expl); 0 below
// -708 (e^-708 = 3.3e-308, next to DBL_MIN), +inf above 708 (e^708 = 3.0e307, next to DBL_MAX),
// and NaN for NaN. x = k ln 2 + r with k an integer, |r| <= ln 2 / 2: e^r by its Taylor series to
// r^13 (the next term is below 6e-18 of e^r), times 2^k built in the exponent bits. k ln 2 is
// split into a part exact for |k| < 2^21 and the rest, so that r keeps its digits.
inline Double4 exp4(Double4 x) {
  const Double4 shifter = Double4{} + 0x1.8p52;  // adding it rounds to an integer kept in the bits
  // NaN compares false: kept.
  const Double4 clamped = x < -708.0 ? Double4{} - 708.0 : (x > 708.0 ? Double4{} + 708.0 : x);
  const Double4 shifted = clamped * std::numbers::log2e + shifter;
  const Double4 k = shifted - shifter;
  const Double4 r = (clamped - k * 0x1.62e42fee00000p-1) - k * 0x1.a39ef35793c76p-33;
  Double4 p = Double4{} + 1.0 / 6227020800.0;  // 1/13!
  for (const double c :
       {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
        1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0}) {
    p = p * r + c;
  }
  // The low bits of shifted hold k (two's complement, |k| <= 1021 here): 2^k is (k + 1023) << 52.
  Int4 bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023) << 52;
  Double4 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const Double4 inf = Double4{} + std::numeric_limits<double>::infinity();
  return x < -708.0 ? Double4{} : (x > 708.0 ? inf : p * scale);
}

}  // namespace rbm
