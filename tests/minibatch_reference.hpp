// Minibatch CD-k / PCD-k recomputed in double from the named draws (host/minibatch.hpp's meaning),
// with how close any draw came to flipping. Shared by the CPU tests and the CUDA-vs-CPU tests:
// two correct implementations part only where a uniform lies within float rounding of its
// probability, so tests compare trajectories whose draws all keep a stated margin. Ternary hidden
// units (start.hidden_type) as in tests/cd_reference.hpp: ternary draws, G(t) for sigm(t).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"
#include "tests/cd_reference.hpp"

namespace rbm::test {

class MinibatchReference {
 public:
  MinibatchReference(const Params& start, const Dataset& data, const Recipe& recipe)
      : data_(data),
        recipe_(recipe),
        d_(start.visible),
        H_(start.hidden),
        ternary_(start.hidden_type == HiddenType::ternary) {
    W.assign(start.W.begin(), start.W.end());
    b.assign(start.b.begin(), start.b.end());
    a.assign(start.a.begin(), start.a.end());
    vW.assign(W.size(), 0.0);
    vb.assign(b.size(), 0.0);
    va.assign(a.size(), 0.0);
  }

  // Update u, from the state the previous updates left.
  void update(int64_t u) {
    const Recipe& r = recipe_;
    const int d = d_, H = H_;
    const int64_t B = r.batch, N = negative_samples(r), rows = data_.rows;
    const double inv_b = 1.0 / static_cast<double>(B), inv_n = 1.0 / static_cast<double>(N);
    const uint64_t key = philox_key(r.seed, Purpose::train);
    const int64_t per_epoch = batches_per_epoch(r, rows);
    const std::vector<uint32_t> order = epoch_permutation(r.seed, u / per_epoch, rows);
    const double lr = learning_rate_at(r, u, total_updates(r, rows));
    if (r.pcd && chains.empty()) {
      for (int64_t c = 0; c < N; ++c) {
        const uint8_t* image = data_.row(initial_chain_image(r.seed, c, rows));
        chains.emplace_back(image, image + d);
      }
    }
    std::vector<std::vector<double>> x0(B), ph0(B), xk, phk;
    for (int64_t row = 0; row < B; ++row) {
      const uint8_t* image = data_.row(order[(u % per_epoch) * B + row]);
      x0[row].assign(image, image + d);
      ph0[row] = hidden_probs(x0[row]);
    }
    if (r.pcd) {
      for (int64_t c = 0; c < N; ++c) {
        std::vector<double> v(chains[c].begin(), chains[c].end()), h(H);
        for (int s = 0; s < r.k; ++s) {
          const int64_t g = u * r.k + s;
          const std::vector<double> t = hidden_pre(v);
          for (int j = 0; j < H; ++j) h[j] = draw_hidden(key, c, sample_hidden_phase(g), j, t[j]);
          const std::vector<double> pv = visible_probs(h);
          for (int i = 0; i < d; ++i) v[i] = draw(key, c, sample_visible_phase(g), i, pv[i]);
        }
        for (int i = 0; i < d; ++i) chains[c][i] = static_cast<uint8_t>(v[i]);
        phk.push_back(hidden_probs(v));
        xk.push_back(v);
      }
    } else {
      for (int64_t row = 0; row < B; ++row) {
        const uint64_t stream = static_cast<uint64_t>(u * B + row);
        std::vector<double> x = x0[row], h(H), ph = ph0[row], t = hidden_pre(x0[row]);
        for (int j = 0; j < H; ++j) h[j] = draw_hidden(key, stream, train_hidden_phase(0), j, t[j]);
        for (int s = 0; s < r.k; ++s) {
          const std::vector<double> pv = visible_probs(h);
          for (int i = 0; i < d; ++i) x[i] = draw(key, stream, train_visible_phase(s), i, pv[i]);
          t = hidden_pre(x);
          ph = means(t);
          if (s + 1 < r.k) {
            for (int j = 0; j < H; ++j)
              h[j] = draw_hidden(key, stream, train_hidden_phase(s + 1), j, t[j]);
          }
        }
        xk.push_back(x);
        phk.push_back(ph);
      }
    }
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < H; ++j) {
        double g = 0.0;
        for (int64_t row = 0; row < B; ++row) g += x0[row][i] * ph0[row][j] * inv_b;
        for (int64_t c = 0; c < N; ++c) g -= xk[c][i] * phk[c][j] * inv_n;
        const size_t at = static_cast<size_t>(i) * H + j;
        vW[at] = r.momentum * vW[at] + lr * (g - r.weight_decay * W[at]);
        W[at] += vW[at];
      }
    }
    for (int j = 0; j < H; ++j) {
      double g = 0.0;
      for (int64_t row = 0; row < B; ++row) g += ph0[row][j] * inv_b;
      for (int64_t c = 0; c < N; ++c) g -= phk[c][j] * inv_n;
      vb[j] = r.momentum * vb[j] + lr * g;
      b[j] += vb[j];
    }
    for (size_t i = 0; i < a.size(); ++i) {
      double g = 0.0;
      for (int64_t row = 0; row < B; ++row) g += x0[row][i] * inv_b;
      for (int64_t c = 0; c < N; ++c) g -= xk[c][i] * inv_n;
      va[i] = r.momentum * va[i] + lr * g;
      a[i] += va[i];
    }
  }

  Params params() const {
    Params p;
    p.visible = d_;
    p.hidden = H_;
    p.hidden_type = ternary_ ? HiddenType::ternary : HiddenType::binary;
    p.W.assign(W.begin(), W.end());
    p.b.assign(b.begin(), b.end());
    p.a.assign(a.begin(), a.end());
    return p;
  }

  std::vector<double> W, b, a, vW, vb, va;
  std::vector<std::vector<uint8_t>> chains;  // PCD's, (N) of (d)
  double min_margin = 1.0;                   // min over all draws so far of |u - p|

 private:
  static double sigm(double t) { return 1.0 / (1.0 + std::exp(-t)); }
  // W'x + b (H).
  std::vector<double> hidden_pre(const std::vector<double>& x) const {
    std::vector<double> out(b);
    for (int i = 0; i < d_; ++i) {
      if (x[i] == 0.0) continue;
      for (int j = 0; j < H_; ++j) out[j] += W[static_cast<size_t>(i) * H_ + j];
    }
    return out;
  }
  // E[h | t]: sigm(t), or G(t) = 2 sinh t / (1 + 2 cosh t) for ternary units.
  std::vector<double> means(std::vector<double> t) const {
    for (double& o : t) o = ternary_ ? ternary_mean_reference(o) : sigm(o);
    return t;
  }
  std::vector<double> hidden_probs(const std::vector<double>& x) const {
    return means(hidden_pre(x));
  }
  // A hidden unit's draw from its pre-activation t: Bernoulli(sigm(t)), or ternary
  // (kernels/rbm_math.h's ternary_draw), with the margin to each threshold.
  double draw_hidden(uint64_t key, uint64_t stream, uint32_t phase, int unit, double t) {
    if (!ternary_) return draw(key, stream, phase, unit, sigm(t));
    const double u = philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
    return ternary_draw_reference(u, t, min_margin);
  }
  std::vector<double> visible_probs(const std::vector<double>& h) const {
    std::vector<double> out(static_cast<size_t>(d_));
    for (int i = 0; i < d_; ++i) {
      double s = a.empty() ? 0.0 : a[i];
      for (int j = 0; j < H_; ++j) s += W[static_cast<size_t>(i) * H_ + j] * h[j];
      out[i] = sigm(s);
    }
    return out;
  }
  double draw(uint64_t key, uint64_t stream, uint32_t phase, int unit, double p) {
    const double u = philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
    min_margin = std::min(min_margin, std::fabs(u - p));
    return u < p ? 1.0 : 0.0;
  }

  const Dataset& data_;
  Recipe recipe_;
  int d_, H_;
  bool ternary_;
};

}  // namespace rbm::test
