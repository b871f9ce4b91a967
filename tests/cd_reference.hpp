// One single-sample CD-k iteration recomputed in long double from the named draws (design.md's
// formula; not the sheet's negative phase), with how close any draw came to flipping. Shared by the
// CPU backend's tests and the CUDA-vs-CPU tests: two correct implementations can differ in a draw
// only where a uniform lies within float rounding of its probability, so tests compare trajectories
// whose draws all keep a stated margin. Ternary hidden units (p.hidden_type): the hidden draw is
// sign(t), 0 or -sign(t) by the uniform against the cumulative probabilities (1, e, e^2) /
// (1 + e + e^2), e = exp(-|t|) (kernels/rbm_math.h's ternary_draw), and G(t) replaces sigm(t).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"

namespace rbm::test {

// G(t) = 2 sinh t / (1 + 2 cosh t), the ternary unit's mean, in R (for moderate t).
template <typename R>
R ternary_mean_reference(R t) {
  return 2 * std::sinh(t) / (1 + 2 * std::cosh(t));
}

// kernels/rbm_math.h's ternary_draw in R: sign(t), 0 or -sign(t) by the uniform u against the
// cumulative probabilities (1, 1 + e) / (1 + e + e^2), e = exp(-|t|); lowers margin to u's
// distance from either threshold.
template <typename R>
R ternary_draw_reference(R u, R t, double& margin) {
  const R e = std::exp(-std::fabs(t)), norm = 1 + e + e * e;
  const R p_sign = 1 / norm, p_sign_or_zero = (1 + e) / norm;
  margin = std::min({margin, static_cast<double>(std::fabs(u - p_sign)),
                     static_cast<double>(std::fabs(u - p_sign_or_zero))});
  const R sign = t < 0 ? -1 : 1;
  return u < p_sign ? sign : (u < p_sign_or_zero ? 0 : -sign);
}

struct CdReference {
  Params after;                 // the parameters after the iteration, rounded to float
  double min_margin = 1.0;      // min over the iteration's draws of |u - p|
  std::vector<uint8_t> x0, xk;  // (d) the chain's first and last visible states
};

using Real = long double;

inline CdReference cd_iteration_reference(const Params& p, const Dataset& data, const Recipe& r,
                                          int64_t t) {
  const int d = p.visible, H = p.hidden;
  const uint64_t key = philox_key(r.seed, Purpose::train);
  const uint64_t stream = static_cast<uint64_t>(t);
  CdReference ref;
  const uint32_t image =
      index_from_bits(philox_block(key, stream, 0, 0).word[0], static_cast<uint32_t>(data.rows));
  const std::vector<Real> x0(data.row(image), data.row(image) + d);
  std::vector<Real> x = x0;
  const bool ternary = p.hidden_type == HiddenType::ternary;
  const auto sigm = [](Real v) { return 1.0L / (1.0L + std::exp(-v)); };
  // The pre-activations W'v + b (H).
  const auto hidden_pre = [&](const std::vector<Real>& v) {
    std::vector<Real> out(p.b.begin(), p.b.end());
    for (int i = 0; i < d; ++i) {
      if (v[i] == 0.0) continue;
      for (int j = 0; j < H; ++j) out[j] += p.W[static_cast<size_t>(i) * H + j];
    }
    return out;
  };
  // E[h | t]: sigm(t), or G(t) = 2 sinh t / (1 + 2 cosh t).
  const auto means = [&](std::vector<Real> pre) {
    for (Real& o : pre) o = ternary ? ternary_mean_reference(o) : sigm(o);
    return pre;
  };
  const auto draw = [&](Real prob, uint32_t phase, int unit) {
    const Real u = philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
    ref.min_margin = std::min(ref.min_margin, static_cast<double>(std::fabs(u - prob)));
    return u < prob ? 1.0L : 0.0L;
  };
  const auto draw_hidden = [&](Real pre, uint32_t phase, int unit) {
    if (!ternary) return draw(sigm(pre), phase, unit);
    const Real u = philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
    return ternary_draw_reference(u, pre, ref.min_margin);
  };
  std::vector<Real> pre_h = hidden_pre(x0);  // (H)
  const std::vector<Real> ph0 = means(pre_h);
  std::vector<Real> ph = ph0, h(H);
  for (int step = 0; step < r.k; ++step) {
    for (int j = 0; j < H; ++j) h[j] = draw_hidden(pre_h[j], train_hidden_phase(step), j);
    for (int i = 0; i < d; ++i) {
      Real s = p.has_visible_bias() ? p.a[i] : 0.0L;
      for (int j = 0; j < H; ++j) s += p.W[static_cast<size_t>(i) * H + j] * h[j];
      x[i] = draw(sigm(s), train_visible_phase(step), i);
    }
    pre_h = hidden_pre(x);
    ph = means(pre_h);
  }
  for (int i = 0; i < d; ++i) {
    ref.x0.push_back(static_cast<uint8_t>(x0[i] != 0));
    ref.xk.push_back(static_cast<uint8_t>(x[i] != 0));
  }
  ref.after = p;
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < H; ++j) {
      const size_t k = static_cast<size_t>(i) * H + j;
      ref.after.W[k] = static_cast<float>(p.W[k] + r.lr * (x0[i] * ph0[j] - x[i] * ph[j]));
    }
  }
  for (int j = 0; j < H; ++j) ref.after.b[j] = static_cast<float>(p.b[j] + r.lr * (ph0[j] - ph[j]));
  for (int i = 0; i < d && p.has_visible_bias(); ++i) {
    ref.after.a[i] = static_cast<float>(p.a[i] + r.lr * (x0[i] - x[i]));
  }
  return ref;
}

// The smallest draw margin over iterations [0, iterations) of the CPU trainer's trajectory from
// init_params(recipe, data).
inline double trajectory_min_margin(const Dataset& data, const Recipe& recipe, int64_t iterations) {
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  cpu->stage(data);
  cpu->set_params(init_params(recipe, data));
  double margin = 1.0;
  for (int64_t t = 0; t < iterations; ++t) {
    margin =
        std::min(margin, cd_iteration_reference(cpu->get_params(), data, recipe, t).min_margin);
    cpu->train_cd(recipe, t, 1);
  }
  return margin;
}

// --- Comparing a single-sample trainer with the CPU reference --------------------------------
// Used by the CUDA engines' tests (tests/cuda/test_cuda_backend.cpp), the fused kernel's CPU
// emulation (tests/test_fused_emulation.cpp) and the kernel lab (bench/fused_lab.cpp).
//
// Two correct trainers part only through float summation order (cuBLAS or a cluster's partial
// sums against the CPU's row sums): probabilities differ by ~1e-7, W by lr times that per
// iteration, ~1e-7 of max |W| after a few hundred iterations. A draw named differently, or one
// flipped, moves W by ~lr / max|W| ~ 1e-2. So the bound max |dW| / max |W| <= 1e-5 tells the two
// apart with two orders of magnitude on both sides. b and a are held to the same bound relative
// to max(max |b|, lr) and max |a|.
constexpr double kTrainRelTol = 1e-5;
// A correct pair of trainers can still part where a uniform falls within float rounding of its
// probability (about 1 draw in 5e6 per 1e-7 of difference). Comparisons therefore run on a seed
// whose CPU trajectory keeps every draw at least kMargin from its probability, 20 times the
// probabilities' expected difference: then any part is a bug, and the comparison is
// deterministic.
constexpr double kMargin = 2e-6;

// `start` trained by `backend` on `data`: iterations [0, sum of pieces) of single-sample CD, one
// train_cd call per piece.
inline Params train_in_pieces(Backend& backend, const Dataset& data, const Params& start,
                              const Recipe& recipe, const std::vector<int64_t>& pieces) {
  backend.stage(data);
  backend.set_params(start);
  int64_t t = 0;
  for (const int64_t count : pieces) {
    backend.train_cd(recipe, t, count);
    t += count;
  }
  return backend.get_params();
}

// The first seed from recipe.seed on whose CPU trajectory (`iterations` long) every draw keeps
// kMargin; throws when none of 200 does.
inline uint32_t seed_clear_of_ties(const Dataset& data, Recipe recipe, int64_t iterations) {
  const uint32_t first = recipe.seed;
  for (; recipe.seed < first + 200; ++recipe.seed) {
    if (trajectory_min_margin(data, recipe, iterations) >= kMargin) return recipe.seed;
  }
  throw std::runtime_error("no seed in [" + std::to_string(first) + ", " +
                           std::to_string(first + 200) + ") keeps every draw " +
                           std::to_string(kMargin) + " from its probability");
}

// max |v_i|.
inline double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (const float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// max |x_i - y_i|; the sizes must agree.
inline double max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
  if (x.size() != y.size()) throw std::invalid_argument("max_abs_diff: sizes differ");
  double m = 0.0;
  for (size_t k = 0; k < x.size(); ++k) {
    m = std::max(m, std::fabs(static_cast<double>(x[k]) - y[k]));
  }
  return m;
}

// The relative differences kTrainRelTol bounds, of W, b and a (0 without visible bias).
struct TrainedDifference {
  double W = 0.0, b = 0.0, a = 0.0;
};
inline TrainedDifference trained_difference(const Params& got, const Params& want,
                                            const Recipe& recipe) {
  TrainedDifference diff;
  diff.W = max_abs_diff(got.W, want.W) / max_abs(want.W);
  diff.b = max_abs_diff(got.b, want.b) / std::max(max_abs(want.b), static_cast<double>(recipe.lr));
  if (!want.a.empty()) diff.a = max_abs_diff(got.a, want.a) / max_abs(want.a);
  return diff;
}

// 28 x 28 images of a noisy ring: pixel on with probability 0.7 on the ring, 0.05 elsewhere.
inline Dataset synthetic_images(int64_t rows, uint64_t seed) {
  Dataset data;
  data.rows = rows;
  data.pixels.resize(static_cast<size_t>(rows * data.cols()));
  data.labels.assign(static_cast<size_t>(rows), 3);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int y = 0; y < data.height; ++y) {
      for (int x = 0; x < data.width; ++x) {
        const double radius = std::hypot(x - 13.5, y - 13.5);
        const double p = radius > 6.0 && radius < 10.0 ? 0.7 : 0.05;
        data.pixels[static_cast<size_t>(r * data.cols() + y * data.width + x)] =
            uniform(rng) < p ? 1 : 0;
      }
    }
  }
  return data;
}

// rows images of d pixels (one row of d), each on with probability `density`: shapes other than
// MNIST's.
inline Dataset random_images(int d, int64_t rows, double density, uint64_t seed) {
  Dataset data;
  data.width = d;
  data.height = 1;
  data.rows = rows;
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution on(density);
  for (int64_t n = 0; n < rows * d; ++n) data.pixels.push_back(on(rng) ? 1 : 0);
  data.labels.assign(static_cast<size_t>(rows), 0);
  return data;
}

}  // namespace rbm::test
