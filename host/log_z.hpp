// log Z of the backend's current model, the way `eval` and `train --eval-every` obtain it: exact
// enumeration of the hidden layer when H is small, otherwise AIS from two base models (the
// base-rate one of Salakhutdinov & Murray and the uniform one), keeping the larger estimate, and
// never below the exact lower bound of host/ais.hpp.
//
// Why two bases: an RBM without (or with weak) visible biases puts the mass 2^d exp(0) of
// uniform-noise images at h = 0 (log Z >= d log 2 = 543.4 for d = 784). AIS from the base-rate
// model starts among digit-like images and misses that mode (scripts/independent_eval.py --check
// saw -4 to -11 nats on trained H = 10 models); AIS from the uniform base starts among noise and
// finds it, but misses the digit modes of a model with strong visible biases. Each estimate Zhat
// has E[Zhat] = Z, so P(log Zhat > log Z + t) <= exp(-t) (Markov): an estimate is a stochastic
// lower bound whose failure is a missed mode, too small a log Z. The larger of two keeps the bound
// (P <= 2 exp(-t)) and repairs whichever missed a mode the other found.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/model.hpp"
#include "host/stop.hpp"

namespace rbm {

enum class LogZMethod { automatic, exact, ais };

struct LogZOptions {
  LogZMethod method = LogZMethod::automatic;
  int max_exact_hidden = 24;  // automatic: exact for H <= this (binary), else AIS
  int64_t ais_runs = 100;
  int64_t ais_betas = 14500;
  uint32_t seed = 1;
  std::vector<float> base_rate;  // (d) base_rate_biases of the training images
  // Looked at by the lower bound, by AIS at every temperature (CPU) or every 32 (CUDA; see
  // host/ais.hpp) and between the two bases, and by exact enumeration every 4096 states of each
  // thread (CPU) or before and after its kernel (CUDA; see Backend::exact_log_partition). Throws
  // Stopped.
  StopRequest stop;
  // AisRequest::steps_done of both bases' AIS (2 x ais_runs x ais_betas steps in all), when set.
  std::atomic<int64_t>* ais_steps_done = nullptr;
  // ExactLogZRequest::states_done of exact enumeration (exact_hidden_states in all), when set.
  std::atomic<int64_t>* exact_states_done = nullptr;
  // A second exact lower bound of log Z for AIS, when set (eval: images_log_z_lower_bound of the
  // scored images, host/evaluate.hpp); the larger of it and the hidden states' is the estimate's.
  std::optional<double> images_lower_bound;
};

struct AisBaseReport {
  std::string name;  // "base-rate" or "uniform"
  double log_z_base = 0.0;
  AisSummary summary;
  double seconds = 0.0;
};

struct LogZEstimate {
  std::string method;  // "exact" or "ais"
  double log_z = 0.0, log_z_low = 0.0, log_z_high = 0.0;
  std::optional<double> ess;         // AIS: the chosen base's effective sample size
  std::vector<AisBaseReport> bases;  // AIS: base-rate (streams 0..M-1), uniform (M..2M-1)
  std::string chosen_base;           // AIS: the base with the larger estimate
  // The larger of log_partition_lower_bound (h in {0, e_j}) and options.images_lower_bound; which
  // one it is.
  double lower_bound = 0.0;
  bool lower_bound_from_images = false;
  // AIS: even the chosen interval's upper end fell below lower_bound, so AIS missed mass it cannot
  // say how much of: log Z >= lower_bound is all that is known (log_z = log_z_low = lower_bound,
  // log_z_high = +inf). More temperatures may repair it.
  bool ais_below_bound = false;
  double seconds = 0.0;
};

// The largest H that `automatic` enumerates for a model of the type, given options'
// max_exact_hidden for binary units: a ternary model gets the largest H with 3^H <= 2^that (the
// same work), at most kMaxExactTernaryHidden (24 -> 15, 20 -> 12).
int max_exact_hidden(HiddenType type, int max_binary_hidden);

// Whether the hidden states of this model can be enumerated at all (--method exact): H up to
// kMaxExactBinaryHidden, or kMaxExactTernaryHidden for ternary units (host/evaluate.hpp).
bool exact_log_z_possible(const Params& params);

// Whether estimate_log_z enumerates the hidden states (exact) rather than run AIS. Throws
// InputError when the options ask for exact enumeration of a model beyond its reach.
bool log_z_is_exact(const Params& params, const LogZOptions& options);

// The backend must hold `params` (set_params). Throws InputError for bad options.
LogZEstimate estimate_log_z(Backend& backend, const Params& params, const LogZOptions& options);

}  // namespace rbm
