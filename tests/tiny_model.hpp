// Tiny models and datasets for exact checks: parameters drawn from Philox normals, images given
// as bit patterns. Shared by the CPU and CUDA tests.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <stdexcept>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"

namespace rbm::test {

// A model with W ~ N(0, scale^2), b and a (when visible_bias) ~ N(0, scale^2), from `seed`.
inline Params random_params(int d, int H, float scale, uint32_t seed, bool visible_bias) {
  uint32_t next = 0;
  const uint64_t key = philox_key(seed, Purpose::init);
  const auto normal = [&] {
    const double u1 = philox_uniform(key, 99, 0, next++);
    const double u2 = philox_uniform(key, 99, 0, next++);
    return static_cast<float>(scale * std::sqrt(-2.0 * std::log(u1)) *
                              std::cos(2.0 * std::numbers::pi * u2));
  };
  Params p;
  p.visible = d;
  p.hidden = H;
  for (int k = 0; k < d * H; ++k) p.W.push_back(normal());
  for (int j = 0; j < H; ++j) p.b.push_back(normal());
  if (visible_bias) {
    for (int i = 0; i < d; ++i) p.a.push_back(normal());
  }
  return p;
}

// A dataset of d-pixel images (width d, height 1) whose pixel i is bit i of each pattern (0 for
// i >= 32: a shift by 32 or more is undefined, as UndefinedBehaviorSanitizer points out).
inline Dataset bit_images(int d, const std::vector<uint32_t>& patterns) {
  Dataset data;
  data.width = d;
  data.height = 1;
  data.rows = static_cast<int64_t>(patterns.size());
  for (const uint32_t pattern : patterns) {
    for (int i = 0; i < d; ++i) {
      data.pixels.push_back(static_cast<uint8_t>(i < 32 ? (pattern >> i) & 1 : 0));
    }
    data.labels.push_back(0);
  }
  return data;
}

// `rows` bit_images of d pixels from a multiplicative hash of the row number and `salt`.
inline Dataset patterned_images(int d, int rows, uint32_t salt) {
  std::vector<uint32_t> patterns;
  for (int n = 0; n < rows; ++n)
    patterns.push_back((static_cast<uint32_t>(n) + salt) * 2654435761u);
  return bit_images(d, patterns);
}

// The exact law (2^d) of a chain after `steps` Gibbs steps x -> h -> x' from the law `law`
// (2^d) (transition matrix over the 2^d visible states, summing the 2^H hidden ones, or the 3^H of
// a ternary model: h_j = digit j of the index in base 3, minus 1), x_i = (index >> i) & 1. Shared
// by the tests of the sampler's burn-in (tests/test_minibatch.cpp, tests/test_gibbs_stats.cpp)
// and of CD-k's expectation (tests/test_gradient.cpp).
inline std::vector<double> exact_law_after(const Params& p, int steps, std::vector<double> law) {
  const bool ternary = p.hidden_type == HiddenType::ternary;
  const int d = p.visible, H = p.hidden, nx = 1 << d, base = ternary ? 3 : 2;
  int nh = 1;
  for (int j = 0; j < H; ++j) nh *= base;
  const auto sigm = [](double t) { return 1.0 / (1.0 + std::exp(-t)); };
  const auto unit = [&](int h, int j) {  // h_j of hidden state h
    for (int k = 0; k < j; ++k) h /= base;
    return h % base - (ternary ? 1 : 0);
  };
  std::vector<double> hx(static_cast<size_t>(nx) * nh), xh(static_cast<size_t>(nh) * nx);
  for (int x = 0; x < nx; ++x) {
    for (int h = 0; h < nh; ++h) {
      double ph = 1.0, px = 1.0;
      for (int j = 0; j < H; ++j) {
        double t = p.b[j];
        for (int i = 0; i < d; ++i) t += ((x >> i) & 1) * static_cast<double>(p.W[i * H + j]);
        // P(h_j = s | t) = exp(s t) / sum_s' exp(s' t) over the unit's values.
        ph *= ternary ? std::exp(unit(h, j) * t) / (1.0 + 2.0 * std::cosh(t))
                      : (unit(h, j) ? sigm(t) : 1.0 - sigm(t));
      }
      for (int i = 0; i < d; ++i) {
        double t = p.has_visible_bias() ? p.a[i] : 0.0;
        for (int j = 0; j < H; ++j) t += unit(h, j) * static_cast<double>(p.W[i * H + j]);
        px *= ((x >> i) & 1) ? sigm(t) : 1.0 - sigm(t);
      }
      hx[static_cast<size_t>(x) * nh + h] = ph;
      xh[static_cast<size_t>(h) * nx + x] = px;
    }
  }
  if (law.size() != static_cast<size_t>(nx)) throw std::invalid_argument("exact_law_after: size");
  std::vector<double> hidden(static_cast<size_t>(nh));
  for (int s = 0; s < steps; ++s) {
    std::fill(hidden.begin(), hidden.end(), 0.0);
    for (int x = 0; x < nx; ++x) {
      for (int h = 0; h < nh; ++h) hidden[h] += law[x] * hx[static_cast<size_t>(x) * nh + h];
    }
    std::fill(law.begin(), law.end(), 0.0);
    for (int h = 0; h < nh; ++h) {
      for (int x = 0; x < nx; ++x) law[x] += hidden[h] * xh[static_cast<size_t>(h) * nx + x];
    }
  }
  return law;
}

// The same from Bernoulli(1/2) states (the sampler's random initial states).
inline std::vector<double> exact_law_after(const Params& p, int steps) {
  return exact_law_after(p, steps,
                         std::vector<double>(size_t{1} << p.visible, 1.0 / (1 << p.visible)));
}

// The model whose W is what TF32 tensor cores multiply by: each weight with a 10-bit mantissa,
// rounded to nearest with ties away from zero (PTX's cvt.rna.tf32.f32) or truncated (the low 13
// bits dropped, what a tensor core does with fp32 bits it is handed unconverted). cuBLAS does not
// document which one its TF32 math mode uses. *ties counts the weights exactly halfway between
// two TF32 values, where rounding to nearest even would differ from ties away.
inline Params with_tf32_weights(Params p, bool truncate, int* ties = nullptr) {
  for (float& w : p.W) {
    uint32_t bits = std::bit_cast<uint32_t>(w);
    if (ties != nullptr) *ties += (bits & 0x1FFFu) == 0x1000u;
    if (!truncate) bits += 0x1000u;  // half of the last kept bit, on the magnitude
    w = std::bit_cast<float>(bits & 0xFFFFE000u);
  }
  return p;
}

// Models of known mixing for the sampler's mixing check (host/mixing.hpp; CPU and CUDA tests).
// W = 0: 50 visible units with biases ~ N(0, 1). Every visible state after a Gibbs step is an
// independent draw from the model; without visible biases (a = 0) every state has the same free
// energy, -sum_j softplus(b_j).
inline Params zero_weight_model(bool visible_bias) {
  Params p = random_params(50, 5, 1.0f, 8, visible_bias);
  std::fill(p.W.begin(), p.W.end(), 0.0f);
  return p;
}
inline Params independent_pixels_model() { return zero_weight_model(true); }
inline Params flat_model() { return zero_weight_model(false); }

// 20 visible units and one hidden unit, every w_i = w and a_i = a.
inline Params one_hidden_unit_model(float w, float b, float a) {
  Params p;
  p.visible = 20;
  p.hidden = 1;
  p.W.assign(20, w);
  p.b = {b};
  p.a.assign(20, a);
  return p;
}

// Two modes no chain leaves, w = 8, a = -4: with h = 1 every pixel is on with probability
// sigmoid(8 - 4) = 0.982, with h = 0 with sigmoid(-4) = 0.018, so that w'x + b stays far above 0
// in the one and far below in the other.
inline Params two_mode_model(float hidden_bias) {
  return one_hidden_unit_model(8.0f, hidden_bias, -4.0f);
}

// Chains that never change: w = 100, a = -50, b = -800, so that a chain with 9 or more pixels on
// at the start (w'x + b > 0; with 8, h is a coin flip) is all on for good (F = 1000 -
// softplus(1200) = -200) and one with fewer all off (F = -softplus(-800), about 0): the
// conditionals are 0 or 1 in float. Each half-chain holds one value, the chains two: W = 0 < B.
inline Params frozen_model() { return one_hidden_unit_model(100.0f, -800.0f, -50.0f); }

// The upper quantile of the chi-square distribution with k degrees of freedom at the normal
// quantile z (upper tail P(N(0, 1) > z)), by the Wilson-Hilferty cube approximation (accurate to
// about 1% here), widened by 5% to cover the approximation's error.
inline double chi_square_limit(int k, double z) {
  if (k < 1) throw std::invalid_argument("chi_square_limit: fewer than 1 degree of freedom");
  const double c = 2.0 / (9.0 * k);
  return 1.05 * k * std::pow(1.0 - c + z * std::sqrt(c), 3.0);
}

// The upper 1e-6 quantile: z = 4.7534.
inline double chi_square_limit_1e6(int k) { return chi_square_limit(k, 4.7534); }

}  // namespace rbm::test
