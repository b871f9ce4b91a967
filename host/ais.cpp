// AIS for log Z (see ais.hpp): the schedule, base rates, summary, and the CPU reference, one run at
// a time per thread. x and h are binary, so W'x and W h are sums of rows of W (d, H) and of its
// transpose (H, d), each padded to whole 8-float vectors; ternary h's W h is the rows where h is 1
// minus those where it is -1.
#include "host/ais.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <string>

#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/errors.hpp"
#include "host/hidden_units.hpp"
#include "host/log_product.hpp"
#include "host/numeric.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm {
namespace {

int padded8(int n) { return (n + 7) / 8 * 8; }

// The rows of a row-major matrix m (rows, cols), or of its transpose, each padded with zeros to
// padded8(cols) floats: (rows, padded8(cols)).
std::vector<float> padded_rows(const std::vector<float>& m, int rows, int cols, bool transpose) {
  const int out_rows = transpose ? cols : rows, out_cols = transpose ? rows : cols;
  const size_t stride = static_cast<size_t>(padded8(out_cols));
  std::vector<float> out(static_cast<size_t>(out_rows) * stride, 0.0f);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const float v = m[static_cast<size_t>(r) * cols + c];
      if (transpose) {
        out[static_cast<size_t>(c) * stride + r] = v;
      } else {
        out[static_cast<size_t>(r) * stride + c] = v;
      }
    }
  }
  return out;
}

// ais_hidden_increment for one kind of hidden unit. beta u_j and beta_prev u_j have one sign, so
// with e = exp(-|t|) each unit's term is (beta - beta_prev) max(u_j, 0) (binary) or
// (beta - beta_prev) |u_j| (ternary), plus the log of a factor in [1/2, 1] or [1/3, 1]:
//   binary   (1 + e1) / (1 + e2)               = 1 + (e1 - e2) / (1 + e2)
//   ternary  (1 + e1 + e1^2) / (1 + e2 + e2^2) = 1 + (e1 - e2) (1 + e1 + e2) / (1 + e2 + e2^2)
// The logs of the factors are summed as the log of their product (log_product), and the exps go
// four at a time: a log1p and two libm exps per unit took a fifth of AIS's time.
template <HiddenType T>
double hidden_increment(const float* u, int H, double beta, double beta_prev) {
  constexpr bool kTernary = T == HiddenType::ternary;
  double linear = 0.0;
  for (int j = 0; j < H; ++j) {
    linear += kTernary ? std::fabs(double{u[j]}) : std::max(double{u[j]}, 0.0);
  }
  const auto ratio = [](auto e1, auto e2) {
    if constexpr (kTernary) {
      return 1.0 + (e1 - e2) * (1.0 + e1 + e2) / (1.0 + e2 + e2 * e2);
    } else {
      return 1.0 + (e1 - e2) / (1.0 + e2);
    }
  };
  const auto factor = [&](int j) {
    const double abs_u = std::fabs(double{u[j]});
    return ratio(std::exp(-beta * abs_u), std::exp(-beta_prev * abs_u));
  };
  const auto factor4 = [&](int j) {
    Float4 u4;
    std::memcpy(&u4, u + j, sizeof u4);
    const Double4 v = __builtin_convertvector(u4, Double4);
    const Double4 abs_u = v < 0.0 ? -v : v;
    return ratio(exp4(-beta * abs_u), exp4(-beta_prev * abs_u));
  };
  const double max_factor_log = kTernary ? std::log(3.0) : std::numbers::ln2;
  return (beta - beta_prev) * linear + log_product(H, factor, factor4, max_factor_log);
}

}  // namespace

void check_ais_request(int d, const AisRequest& request) {
  if (request.base_bias.size() != static_cast<size_t>(d)) {
    throw InputError("AIS: the base model has " + std::to_string(request.base_bias.size()) +
                     " visible biases, the model " + std::to_string(d) + " units");
  }
  const std::vector<double>& betas = request.betas;
  if (betas.size() < 2 || betas.front() != 0.0 || betas.back() != 1.0) {
    throw InputError("AIS: the inverse temperatures must run from 0 to 1");
  }
  for (size_t k = 1; k < betas.size(); ++k) {
    if (!(betas[k] > betas[k - 1])) throw InputError("AIS: the inverse temperatures must increase");
  }
  if (betas.size() - 1 > (size_t{1} << 30)) throw InputError("AIS: more than 2^30 steps");
  if (request.runs < 1) throw InputError("AIS: at least one run");
  for (const float c : request.base_bias) {
    if (!std::isfinite(c)) throw InputError("AIS: a base-model bias is not finite");
  }
}

std::vector<double> ais_betas(int64_t n_betas) {
  if (n_betas < 3) throw InputError("--ais-betas must be at least 3");
  const auto scaled = [&](double count) {
    return std::max<int64_t>(1, std::llround(static_cast<double>(n_betas) * count / 14500.0));
  };
  const int64_t n1 = scaled(500), n2 = scaled(4000), n3 = std::max<int64_t>(1, n_betas - n1 - n2);
  std::vector<double> betas;
  betas.reserve(static_cast<size_t>(n1 + n2 + n3 + 1));
  // Like numpy.linspace: start + i (stop - start) / n, the last segment including its stop.
  const auto segment = [&](double start, double stop, int64_t n, bool with_stop) {
    const int64_t points = with_stop ? n + 1 : n;
    for (int64_t i = 0; i < points; ++i) {
      betas.push_back(start + static_cast<double>(i) * (stop - start) / static_cast<double>(n));
    }
  };
  segment(0.0, 0.5, n1, false);
  segment(0.5, 0.9, n2, false);
  segment(0.9, 1.0, n3, true);
  betas.back() = 1.0;
  return betas;
}

std::vector<float> base_rate_biases(const Dataset& train) {
  if (train.rows <= 0) throw InputError("AIS: no training images for the base rates");
  const std::vector<double> means = pixel_means(train);
  const double n = static_cast<double>(train.rows);
  std::vector<float> biases(means.size());
  for (size_t i = 0; i < means.size(); ++i) {
    const double p = (means[i] * n + 0.05) / (n + 0.1);
    biases[i] = static_cast<float>(std::log(p) - std::log1p(-p));
  }
  return biases;
}

AisSummary summarize_ais(const AisResult& result) {
  const std::vector<double>& log_w = result.log_weights;
  const double m = static_cast<double>(log_w.size());
  if (log_w.empty()) throw InputError("AIS: no runs to summarize");
  const double top = *std::max_element(log_w.begin(), log_w.end());
  double sum = 0.0, sum_sq = 0.0;
  for (const double v : log_w) {
    const double w = std::exp(v - top);  // in (0, 1], the largest exactly 1
    sum += w;
    sum_sq += w * w;
  }
  const double mean = sum / m;
  double variance = 0.0;
  for (const double v : log_w) variance += (std::exp(v - top) - mean) * (std::exp(v - top) - mean);
  variance = log_w.size() > 1 ? variance / (m - 1.0) : 0.0;
  const double half = 3.0 * std::sqrt(variance / m);
  const double offset = result.log_z_base + top;
  AisSummary summary;
  summary.log_z = offset + std::log(mean);
  summary.log_z_high = offset + std::log(mean + half);
  summary.log_z_low =
      mean > half ? offset + std::log(mean - half) : -std::numeric_limits<double>::infinity();
  summary.ess = sum * sum / sum_sq;
  return summary;
}

double ais_hidden_increment(HiddenType type, const float* u, int H, double beta, double beta_prev) {
  return with_hidden_type(type, [&](auto tag) {
    return hidden_increment<decltype(tag)::value>(u, H, beta, beta_prev);
  });
}

AisResult ais_cpu(const Params& params, const AisRequest& request) {
  check_ais_request(params.visible, request);
  const int d = params.visible, H = params.hidden, Hp = padded8(H), dp = padded8(d);
  const std::vector<float> W = padded_rows(params.W, d, H, false);  // (d, Hp)
  const std::vector<float> WT = padded_rows(params.W, d, H, true);  // (H, dp)
  const std::vector<float>& c = request.base_bias;                  // (d)
  const std::vector<float> a = params.has_visible_bias() ? params.a : std::vector<float>(d, 0.0f);
  std::vector<double> a_minus_c(static_cast<size_t>(d));  // (d)
  std::vector<float> base_prob(static_cast<size_t>(d));   // (d) p_0(x_i = 1)
  bool visible_term = false;
  for (int i = 0; i < d; ++i) {
    a_minus_c[i] = static_cast<double>(a[i]) - static_cast<double>(c[i]);
    visible_term |= a_minus_c[i] != 0.0;
    base_prob[i] = sigmoid(c[i]);
  }
  const uint64_t key = philox_key(request.seed, Purpose::ais);
  const std::vector<double>& betas = request.betas;
  const int64_t K = static_cast<int64_t>(betas.size()) - 1;

  AisResult result;
  result.log_weights.assign(static_cast<size_t>(request.runs), 0.0);
  std::atomic<bool> stopped{false};  // a worker gave up on request.stop
  with_hidden_type(params.hidden_type, [&](auto type) {
    constexpr HiddenType kType = decltype(type)::value;
    parallel_for(request.runs, [&](int64_t, int64_t begin, int64_t end) {
      // Compiled for AVX-512 where the CPU has it (host/simd.hpp): the sigmoids of the Gibbs
      // sweeps, with the same bits.
      cpu::with_simd([&]() RBM_SIMD_BODY {
        std::vector<float> u(static_cast<size_t>(Hp)), t(static_cast<size_t>(dp));
        std::vector<float> t_minus(kType == HiddenType::ternary ? static_cast<size_t>(dp) : 0);
        std::vector<float> uniforms(static_cast<size_t>(std::max(d, H)));
        std::vector<float> prob(static_cast<size_t>(std::max(d, H)));
        std::vector<int> x_on(static_cast<size_t>(d)), h_on(static_cast<size_t>(H));
        std::vector<int> h_minus(kType == HiddenType::ternary ? static_cast<size_t>(H) : 0);
        for (int64_t r = begin; r < end; ++r) {
          const uint64_t stream = request.first_stream + static_cast<uint64_t>(r);
          // x_1 ~ p_0; x_on[0..n_x) lists the units that are 1.
          cpu::philox_uniforms(key, stream, ais_init_phase(), 0, d, uniforms.data());
          int n_x = cpu::indices_where_less(uniforms.data(), base_prob.data(), d, x_on.data());
          double log_w = 0.0;
          for (int64_t k = 1; k <= K; ++k) {
            // A look per temperature step bounds the wait for a stop request to one step, however
            // many temperatures and runs the request has (a log point's AIS takes seconds).
            if (stop_requested(request.stop)) {
              stopped.store(true);
              return;
            }
            // u (H) = W'x + b in float; the weight's increment in double.
            cpu::sum_of_rows(W.data(), static_cast<size_t>(Hp), x_on.data(), n_x, Hp, u.data());
            for (int j = 0; j < H; ++j) u[j] += params.b[j];
            const double beta = betas[k], beta_prev = betas[k - 1];
            double increment = 0.0;
            if (visible_term) {
              double dot = 0.0;
              for (int n = 0; n < n_x; ++n) dot += a_minus_c[x_on[n]];
              increment += (beta - beta_prev) * dot;
            }
            increment += hidden_increment<kType>(u.data(), H, beta, beta_prev);
            log_w += increment;
            if (request.steps_done != nullptr) {
              request.steps_done->fetch_add(1, std::memory_order_relaxed);
            }
            if (k == K) break;
            // One Gibbs sweep at beta_k: h ~ sigm(beta u), x ~ sigm(beta (W h + a) + (1 - beta) c).
            const float beta_f = static_cast<float>(beta);
            if constexpr (kType == HiddenType::ternary) {
              // h_j = ternary_draw(uniform, beta u_j); W h = the rows of W' where h is 1 minus
              // those where it is -1.
              cpu::philox_uniforms(key, stream, ais_hidden_phase(k), 0, H, uniforms.data());
              int n_plus = 0, n_minus = 0;
              for (int j = 0; j < H; ++j) {
                const float h = ternary_draw(uniforms[j], beta_f * u[j]);
                if (h > 0.0f) h_on[n_plus++] = j;
                if (h < 0.0f) h_minus[n_minus++] = j;
              }
              cpu::sum_of_rows(WT.data(), static_cast<size_t>(dp), h_on.data(), n_plus, dp,
                               t.data());
              cpu::sum_of_rows(WT.data(), static_cast<size_t>(dp), h_minus.data(), n_minus, dp,
                               t_minus.data());
              for (int i = 0; i < d; ++i) t[i] -= t_minus[i];
            } else {
              for (int j = 0; j < H; ++j) prob[j] = sigmoid(beta_f * u[j]);
              cpu::philox_uniforms(key, stream, ais_hidden_phase(k), 0, H, uniforms.data());
              const int n_h = cpu::indices_where_less(uniforms.data(), prob.data(), H, h_on.data());
              cpu::sum_of_rows(WT.data(), static_cast<size_t>(dp), h_on.data(), n_h, dp, t.data());
            }
            cpu::philox_uniforms(key, stream, ais_visible_phase(k), 0, d, uniforms.data());
            for (int i = 0; i < d; ++i) {
              prob[i] = sigmoid(beta_f * (t[i] + a[i]) + (1.0f - beta_f) * c[i]);
            }
            n_x = cpu::indices_where_less(uniforms.data(), prob.data(), d, x_on.data());
          }
          result.log_weights[static_cast<size_t>(r)] = log_w;
        }
      });
    });
  });
  if (stopped.load()) throw Stopped();
  result.log_z_base = ais_log_z_base(c, H, params.hidden_type);
  return result;
}

double ais_log_z_base(const std::vector<float>& c, int H, HiddenType type) {
  double log_z = H * (type == HiddenType::ternary ? std::log(3.0) : std::numbers::ln2);
  for (const float ci : c) log_z += softplus(ci);
  return log_z;
}

double log_partition_lower_bound(const Params& params, const StopRequest& stop) {
  const int d = params.visible, H = params.hidden;
  const auto a = [&](int i) { return params.has_visible_bias() ? double{params.a[i]} : 0.0; };
  LogSumExp terms;
  double h0 = 0.0;
  for (int i = 0; i < d; ++i) h0 += softplus(a(i));
  terms.add(h0);
  // h = e_j, and for ternary units also h = -e_j.
  const std::vector<double> signs =
      params.hidden_type == HiddenType::ternary ? std::vector<double>{1.0, -1.0} : std::vector{1.0};
  for (int j = 0; j < H; ++j) {
    throw_if_stopped(stop);
    for (const double s : signs) {
      double v = s * params.b[j];
      for (int i = 0; i < d; ++i) {
        v += softplus(a(i) + s * params.W[static_cast<size_t>(i) * H + j]);
      }
      terms.add(v);
    }
  }
  return terms.value();
}

}  // namespace rbm
