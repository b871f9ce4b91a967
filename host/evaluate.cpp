// Model quality (see evaluate.hpp): exact enumeration for small models, and the batch metrics
// that training logs. Batch products use OpenBLAS sgemm; sums that need it are in double.
#include "host/evaluate.hpp"

#include <cblas.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "host/numeric.hpp"
#include "kernels/rbm_math.h"

namespace rbm {
namespace {

// The images as floats (n, d), row-major, for sgemm.
std::vector<float> as_float(const Dataset& images) {
  return std::vector<float>(images.pixels.begin(), images.pixels.end());
}

// out (n, H) = X (n, d) W (d, H) + b.
std::vector<float> hidden_preactivations(const Params& params, const std::vector<float>& x,
                                         int64_t n) {
  const int d = params.visible, H = params.hidden;
  std::vector<float> out(static_cast<size_t>(n) * H);
  for (int64_t r = 0; r < n; ++r) std::copy(params.b.begin(), params.b.end(), out.begin() + r * H);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), H, d, 1.0f, x.data(),
              d, params.W.data(), H, 1.0f, out.data(), H);
  return out;
}

double visible_bias_term(const Params& params, const uint8_t* x) {
  double sum = 0.0;
  if (params.has_visible_bias()) {
    for (int i = 0; i < params.visible; ++i) sum += x[i] ? params.a[i] : 0.0;
  }
  return sum;
}

}  // namespace

double free_energy(const Params& params, const uint8_t* x) {
  const int d = params.visible, H = params.hidden;
  std::vector<double> pre(params.b.begin(), params.b.end());  // (H)
  for (int i = 0; i < d; ++i) {
    if (!x[i]) continue;
    for (int j = 0; j < H; ++j) pre[j] += params.W[static_cast<size_t>(i) * H + j];
  }
  double energy = -visible_bias_term(params, x);
  for (const double t : pre) energy -= softplus(t);
  return energy;
}

double mean_free_energy(const Params& params, const Dataset& images) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const int H = params.hidden;
  const std::vector<float> pre = hidden_preactivations(params, as_float(images), images.rows);
  double total = 0.0;
  for (int64_t r = 0; r < images.rows; ++r) {
    double energy = -visible_bias_term(params, images.row(r));
    for (int j = 0; j < H; ++j) energy -= softplus(pre[static_cast<size_t>(r) * H + j]);
    total += energy;
  }
  return total / static_cast<double>(images.rows);
}

double exact_log_partition(const Params& params) {
  const int d = params.visible, H = params.hidden;
  if (H > 30) throw std::invalid_argument("exact_log_partition: H > 30 is out of reach");
  const int64_t n_states = int64_t{1} << H;
  std::vector<LogSumExp> partial(static_cast<size_t>(thread_count()));
  // Walks the hidden states in Gray-code order, so that each state differs from the previous one
  // in one unit and the visible pre-activations W h + a (d) update in O(d).
  parallel_for(n_states, [&](int64_t worker, int64_t begin, int64_t end) {
    std::vector<double> pre(static_cast<size_t>(d));
    const auto gray = [](int64_t n) { return n ^ (n >> 1); };
    int64_t state = gray(begin);
    double bias = 0.0;
    for (int i = 0; i < d; ++i) pre[i] = params.has_visible_bias() ? params.a[i] : 0.0;
    for (int j = 0; j < H; ++j) {
      if (!((state >> j) & 1)) continue;
      bias += params.b[j];
      for (int i = 0; i < d; ++i) pre[i] += params.W[static_cast<size_t>(i) * H + j];
    }
    LogSumExp acc;
    for (int64_t n = begin; n < end; ++n) {
      if (n > begin) {
        const int j = std::countr_zero(static_cast<uint64_t>(n));  // the bit that flips
        const double sign = ((gray(n) >> j) & 1) ? 1.0 : -1.0;
        bias += sign * params.b[j];
        for (int i = 0; i < d; ++i) pre[i] += sign * params.W[static_cast<size_t>(i) * H + j];
      }
      double log_weight = bias;
      for (int i = 0; i < d; ++i) log_weight += softplus(pre[i]);
      acc.add(log_weight);
    }
    partial[static_cast<size_t>(worker)] = acc;
  });
  LogSumExp total;
  for (const LogSumExp& p : partial) total.merge(p);
  return total.value();
}

double mean_log_prob(const Params& params, const Dataset& images, double log_partition) {
  return -mean_free_energy(params, images) - log_partition;
}

std::vector<double> visible_distribution(const Params& params) {
  const int d = params.visible;
  if (d > 24) throw std::invalid_argument("visible_distribution: d > 24 is out of reach");
  const int64_t n_states = int64_t{1} << d;
  std::vector<double> log_p(static_cast<size_t>(n_states));
  std::vector<uint8_t> x(static_cast<size_t>(d));
  LogSumExp norm;
  for (int64_t s = 0; s < n_states; ++s) {
    for (int i = 0; i < d; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    log_p[s] = -free_energy(params, x.data());
    norm.add(log_p[s]);
  }
  for (double& v : log_p) v = std::exp(v - norm.value());
  return log_p;
}

double reconstruction_error(const Params& params, const Dataset& images) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const int d = params.visible, H = params.hidden;
  const int n = static_cast<int>(images.rows);
  const std::vector<float> x = as_float(images);
  std::vector<float> prob_h = hidden_preactivations(params, x, n);
  for (float& t : prob_h) t = sigmoid(t);
  std::vector<float> pre_v(static_cast<size_t>(n) * d, 0.0f);  // (n, d)
  if (params.has_visible_bias()) {
    for (int r = 0; r < n; ++r) std::copy(params.a.begin(), params.a.end(), pre_v.begin() + r * d);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, H, 1.0f, prob_h.data(), H,
              params.W.data(), H, 1.0f, pre_v.data(), d);
  double total = 0.0;
  for (size_t k = 0; k < pre_v.size(); ++k) {
    const double diff = x[k] - sigmoid(pre_v[k]);
    total += diff * diff;
  }
  return total / static_cast<double>(pre_v.size());
}

double mean_pseudo_log_likelihood(const Params& params, const Dataset& images) {
  if (images.rows == 0) return std::numeric_limits<double>::quiet_NaN();
  const int d = params.visible, H = params.hidden;
  const std::vector<float> pre = hidden_preactivations(params, as_float(images), images.rows);
  std::vector<double> per_worker(static_cast<size_t>(thread_count()), 0.0);
  // log p(x_i | x_-i) = -softplus(F(x) - F(x with x_i flipped)); flipping x_i adds s W_i to the
  // hidden pre-activations and s a_i to a'x, with s = 1 - 2 x_i.
  parallel_for(images.rows, [&](int64_t worker, int64_t begin, int64_t end) {
    double sum = 0.0;
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* x = images.row(r);
      const float* t = pre.data() + static_cast<size_t>(r) * H;
      double softplus_sum = 0.0;
      for (int j = 0; j < H; ++j) softplus_sum += softplus(t[j]);
      for (int i = 0; i < d; ++i) {
        const double s = x[i] ? -1.0 : 1.0;
        const float* w_row = params.W.data() + static_cast<size_t>(i) * H;
        double flipped = 0.0;
        for (int j = 0; j < H; ++j) flipped += softplus(t[j] + s * w_row[j]);
        const double a_i = params.has_visible_bias() ? params.a[i] : 0.0;
        // F(x) - F(x') = -(a'x - a'x') - (softplus_sum - flipped) = s a_i + flipped - softplus_sum
        sum -= softplus(s * a_i + flipped - softplus_sum);
      }
    }
    per_worker[static_cast<size_t>(worker)] = sum;
  });
  double total = 0.0;
  for (const double v : per_worker) total += v;
  return total / static_cast<double>(images.rows);
}

Params exact_gradient(const Params& params, const Dataset& images) {
  const int d = params.visible, H = params.hidden;
  if (d > 20) throw std::invalid_argument("exact_gradient: d > 20 is out of reach");
  Params grad;
  grad.visible = d;
  grad.hidden = H;
  std::vector<double> gW(static_cast<size_t>(d) * H, 0.0), gb(H, 0.0), ga(d, 0.0);
  // Adds weight * (x sigm(W'x + b)', sigm(W'x + b), x) to the sums.
  const auto accumulate = [&](const uint8_t* x, double weight) {
    for (int j = 0; j < H; ++j) {
      double t = params.b[j];
      for (int i = 0; i < d; ++i) t += x[i] ? params.W[static_cast<size_t>(i) * H + j] : 0.0;
      const double p = 1.0 / (1.0 + std::exp(-t));
      gb[j] += weight * p;
      for (int i = 0; i < d; ++i) gW[static_cast<size_t>(i) * H + j] += x[i] ? weight * p : 0.0;
    }
    for (int i = 0; i < d; ++i) ga[i] += x[i] ? weight : 0.0;
  };
  for (int64_t r = 0; r < images.rows; ++r) {
    accumulate(images.row(r), 1.0 / static_cast<double>(images.rows));
  }
  const std::vector<double> p_model = visible_distribution(params);
  std::vector<uint8_t> x(static_cast<size_t>(d));
  for (size_t s = 0; s < p_model.size(); ++s) {
    for (int i = 0; i < d; ++i) x[i] = static_cast<uint8_t>((s >> i) & 1);
    accumulate(x.data(), -p_model[s]);
  }
  grad.W.assign(gW.begin(), gW.end());
  grad.b.assign(gb.begin(), gb.end());
  if (params.has_visible_bias()) grad.a.assign(ga.begin(), ga.end());
  return grad;
}

}  // namespace rbm
