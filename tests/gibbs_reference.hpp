// The many-chain sampler (Backend::gibbs) chain by chain and AIS (Backend::ais) run by run,
// recomputed in double from the named draws (host/backend.hpp), with how close any draw came to
// flipping. Two correct implementations make different draws only where a uniform lies within
// float rounding of its probability, so the GPU tests compare, exactly, the chains and runs whose
// every draw keeps test::kMargin (tests/cd_reference.hpp) and let only the others part.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/hidden_units.hpp"
#include "host/model.hpp"
#include "host/numeric.hpp"
#include "kernels/philox.h"
#include "tests/cd_reference.hpp"

namespace rbm::test {

// body(i) for i in [0, n), over host/numeric.hpp's parallel_for (the CPU build's own split, which
// covers every index on any number of threads; this file's former copy left out the last half of
// the runs whenever they were fewer than the hardware threads: 8 AIS runs on 16 cores).
template <typename Body>
void parallel_indices(int64_t n, Body body) {
  parallel_for(n, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

struct ChainReference {
  std::vector<uint8_t> state;  // (d) after the steps
  double min_margin = 1.0;     // min over the chain's draws of |u - p| (both thresholds: ternary)
};

// Chain `chain` of Backend::gibbs(..., seed, first_step, steps) from `initial` (d): key (seed,
// sample), stream = chain, phases sample_hidden_phase(g) and sample_visible_phase(g).
inline ChainReference sampler_chain_reference(const Params& p, uint32_t seed, uint64_t chain,
                                              const uint8_t* initial, int64_t first_step,
                                              int64_t steps) {
  const int d = p.visible, H = p.hidden;
  const bool ternary = p.hidden_type == HiddenType::ternary;
  const uint64_t key = philox_key(seed, Purpose::sample);
  const auto sigm = [](double t) { return 1.0 / (1.0 + std::exp(-t)); };
  ChainReference ref;
  ref.state.assign(initial, initial + d);
  std::vector<double> t(static_cast<size_t>(H)), h(static_cast<size_t>(H));
  for (int64_t g = first_step; g < first_step + steps; ++g) {
    std::copy(p.b.begin(), p.b.end(), t.begin());  // t (H) = W'x + b
    for (int i = 0; i < d; ++i) {
      if (ref.state[static_cast<size_t>(i)] == 0) continue;
      const float* row = p.W.data() + static_cast<size_t>(i) * H;
      for (int j = 0; j < H; ++j) t[static_cast<size_t>(j)] += row[j];
    }
    for (int j = 0; j < H; ++j) {
      const double u = philox_uniform(key, chain, sample_hidden_phase(g), static_cast<uint32_t>(j));
      const double tj = t[static_cast<size_t>(j)];
      if (ternary) {
        h[static_cast<size_t>(j)] = ternary_draw_reference(u, tj, ref.min_margin);
      } else {
        ref.min_margin = std::min(ref.min_margin, std::fabs(u - sigm(tj)));
        h[static_cast<size_t>(j)] = u < sigm(tj) ? 1.0 : 0.0;
      }
    }
    for (int i = 0; i < d; ++i) {  // x_i ~ sigm(W_i h + a_i)
      const float* row = p.W.data() + static_cast<size_t>(i) * H;
      double s = p.has_visible_bias() ? p.a[static_cast<size_t>(i)] : 0.0;
      for (int j = 0; j < H; ++j) s += row[j] * h[static_cast<size_t>(j)];
      const double u =
          philox_uniform(key, chain, sample_visible_phase(g), static_cast<uint32_t>(i));
      ref.min_margin = std::min(ref.min_margin, std::fabs(u - sigm(s)));
      ref.state[static_cast<size_t>(i)] = u < sigm(s) ? 1 : 0;
    }
  }
  return ref;
}

// The chains `chains` (their indices), from initial_rows (chains.size(), d), on all threads.
inline std::vector<ChainReference> sampler_reference(const Params& p, uint32_t seed,
                                                     const std::vector<int64_t>& chains,
                                                     const std::vector<uint8_t>& initial_rows,
                                                     int64_t first_step, int64_t steps) {
  std::vector<ChainReference> refs(chains.size());
  parallel_indices(static_cast<int64_t>(chains.size()), [&](int64_t k) {
    refs[static_cast<size_t>(k)] =
        sampler_chain_reference(p, seed, static_cast<uint64_t>(chains[static_cast<size_t>(k)]),
                                initial_rows.data() + k * p.visible, first_step, steps);
  });
  return refs;
}

// The first seed of [first, first + 50) whose reference keeps every draw of each chain in
// `must_clear` kMargin from its probability (chains that start from initial_rows' rows, one per
// listed chain); throws when none does. The chains a test names (a batch's first and last, the
// last of all) then take part in its exact comparison.
inline uint32_t seed_clearing_chains(const Params& p, uint32_t first,
                                     const std::vector<int64_t>& must_clear,
                                     const std::vector<uint8_t>& initial_rows, int64_t first_step,
                                     int64_t steps) {
  for (uint32_t seed = first; seed < first + 50; ++seed) {
    const std::vector<ChainReference> refs =
        sampler_reference(p, seed, must_clear, initial_rows, first_step, steps);
    if (std::all_of(refs.begin(), refs.end(),
                    [](const ChainReference& r) { return r.min_margin >= kMargin; })) {
      return seed;
    }
  }
  throw std::runtime_error("no seed in [" + std::to_string(first) + ", " +
                           std::to_string(first + 50) + ") keeps the named chains clear of ties");
}

// Rows `chains` of states (n, d), in that order.
inline std::vector<uint8_t> rows_of(const std::vector<uint8_t>& states, int d,
                                    const std::vector<int64_t>& chains) {
  std::vector<uint8_t> rows;
  rows.reserve(chains.size() * static_cast<size_t>(d));
  for (const int64_t c : chains) {
    rows.insert(rows.end(), states.begin() + c * d, states.begin() + (c + 1) * d);
  }
  return rows;
}

// How the chains of one sampler compare with their reference: `clear` chains keep kMargin on
// every draw; `mismatched` of them ended in another state than the reference's (0 for a correct
// sampler: two correct samplers part only where a draw is within rounding of its probability).
struct ChainComparison {
  int64_t clear = 0, mismatched = 0;
};
inline ChainComparison compare_clear_chains(const std::vector<ChainReference>& refs,
                                            const std::vector<uint8_t>& rows, int d) {
  ChainComparison result;
  for (size_t k = 0; k < refs.size(); ++k) {
    if (refs[k].min_margin < kMargin) continue;
    ++result.clear;
    result.mismatched += !std::equal(refs[k].state.begin(), refs[k].state.end(),
                                     rows.begin() + static_cast<int64_t>(k) * d);
  }
  return result;
}

// The many-chain sampler's comparison case, shared by GibbsReference.CpuSamplerMatchesClearChains
// (the CPU alone) and CudaSampler.ChainsMatchCpu: 1000 chains of a 784 x 100 model (init_params of
// synthetic images, visible biases) from random states, steps [5, 8); the seed is the first from
// 77 that keeps the chains at the edges of batches of 384 (0, 383, 384, 767, 768) and the last
// (999) clear of ties, and refs is every chain's reference.
struct SamplerChainsCase {
  Params params;
  int64_t n = 1000, first_step = 5, steps = 3;
  std::vector<uint8_t> initial;  // (n, 784)
  uint32_t seed = 0;
  std::vector<ChainReference> refs;
};
inline SamplerChainsCase sampler_chains_case(HiddenType type) {
  SamplerChainsCase c;
  Recipe init;
  init.init_std = 0.1f;
  init.visible_bias = true;
  init.hidden_type = type;
  c.params = init_params(init, synthetic_images(50, 2));
  c.initial = random_initial_states(c.n, 784, 3);
  std::vector<int64_t> all(static_cast<size_t>(c.n)), edges = {0, 383, 384, 767, 768, 999};
  for (int64_t k = 0; k < c.n; ++k) all[static_cast<size_t>(k)] = k;
  c.seed = seed_clearing_chains(c.params, 77, edges, rows_of(c.initial, 784, edges), c.first_step,
                                c.steps);
  c.refs = sampler_reference(c.params, c.seed, all, c.initial, c.first_step, c.steps);
  return c;
}

// AIS on the tests' 16-pixel models: `steps` temperatures, `runs` runs from stream first_stream,
// base-model biases `base` but pixel 5's, 1.5.
inline AisRequest tiny_ais_request(int64_t steps, int64_t runs, uint32_t seed,
                                   uint64_t first_stream, float base) {
  AisRequest request;
  request.betas = ais_betas(steps);
  request.runs = runs;
  request.seed = seed;
  request.first_stream = first_stream;
  request.base_bias.assign(16, base);
  request.base_bias[5] = 1.5f;
  return request;
}

struct AisRunReference {
  double log_weight = 0.0;  // log w of the run
  double min_margin = 1.0;  // min over the run's draws of |u - p|
};

// Run r of Backend::ais(request) (host/ais.hpp's scheme, host/backend.hpp's draws) in double.
inline AisRunReference ais_run_reference(const Params& p, const AisRequest& request, int64_t r) {
  const int d = p.visible, H = p.hidden;
  const bool ternary = p.hidden_type == HiddenType::ternary;
  const uint64_t key = philox_key(request.seed, Purpose::ais);
  const uint64_t stream = request.first_stream + static_cast<uint64_t>(r);
  const std::vector<double>& betas = request.betas;
  const std::vector<float>& c = request.base_bias;
  const auto sigm = [](double t) { return 1.0 / (1.0 + std::exp(-t)); };
  const auto a = [&](int i) { return p.has_visible_bias() ? double{p.a[i]} : 0.0; };
  AisRunReference ref;
  const auto draw = [&](uint32_t phase, int unit, double prob) {
    const double u = philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
    ref.min_margin = std::min(ref.min_margin, std::fabs(u - prob));
    return u < prob ? 1.0 : 0.0;
  };
  std::vector<double> x(static_cast<size_t>(d)), h(static_cast<size_t>(H)),
      t(static_cast<size_t>(H));
  for (int i = 0; i < d; ++i) x[i] = draw(ais_init_phase(), i, sigm(c[i]));
  for (size_t k = 1; k < betas.size(); ++k) {
    const double beta = betas[k], beta_prev = betas[k - 1];
    std::copy(p.b.begin(), p.b.end(), t.begin());  // t (H) = W'x + b
    double increment = 0.0;
    for (int i = 0; i < d; ++i) {
      if (x[i] == 0.0) continue;
      increment += (beta - beta_prev) * (a(i) - c[i]);
      const float* row = p.W.data() + static_cast<size_t>(i) * H;
      for (int j = 0; j < H; ++j) t[j] += row[j];
    }
    for (int j = 0; j < H; ++j) {
      increment += ternary ? hidden_log_sum<HiddenType::ternary>(beta * t[j]) -
                                 hidden_log_sum<HiddenType::ternary>(beta_prev * t[j])
                           : hidden_log_sum<HiddenType::binary>(beta * t[j]) -
                                 hidden_log_sum<HiddenType::binary>(beta_prev * t[j]);
    }
    ref.log_weight += increment;
    if (k + 1 == betas.size()) break;
    // One sweep at beta: h ~ p(h | beta t), x ~ sigm(beta (W h + a) + (1 - beta) c).
    const int64_t step = static_cast<int64_t>(k);
    for (int j = 0; j < H; ++j) {
      if (ternary) {
        const double u =
            philox_uniform(key, stream, ais_hidden_phase(step), static_cast<uint32_t>(j));
        h[j] = ternary_draw_reference(u, beta * t[j], ref.min_margin);
      } else {
        h[j] = draw(ais_hidden_phase(step), j, sigm(beta * t[j]));
      }
    }
    for (int i = 0; i < d; ++i) {
      const float* row = p.W.data() + static_cast<size_t>(i) * H;
      double s = 0.0;
      for (int j = 0; j < H; ++j) s += row[j] * h[j];
      x[i] = draw(ais_visible_phase(step), i, sigm(beta * (s + a(i)) + (1.0 - beta) * c[i]));
    }
  }
  return ref;
}

// Every run of the request, on all threads.
inline std::vector<AisRunReference> ais_reference(const Params& p, const AisRequest& request) {
  std::vector<AisRunReference> refs(static_cast<size_t>(request.runs));
  parallel_indices(request.runs, [&](int64_t r) {
    refs[static_cast<size_t>(r)] = ais_run_reference(p, request, r);
  });
  return refs;
}

}  // namespace rbm::test
