// log Z for eval and training (see log_z.hpp).
#include "host/log_z.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "host/errors.hpp"
#include "host/evaluate.hpp"

namespace rbm {

int max_exact_hidden(HiddenType type, int max_binary_hidden) {
  if (type == HiddenType::binary) return max_binary_hidden;
  // The largest H with 3^H <= 2^max_binary_hidden: H log2(3) <= max_binary_hidden.
  const int same_work = static_cast<int>(std::floor(max_binary_hidden / std::log2(3.0)));
  return std::min(same_work, kMaxExactTernaryHidden);
}

bool exact_log_z_possible(const Params& params) {
  return params.hidden <= (params.hidden_type == HiddenType::ternary ? kMaxExactTernaryHidden
                                                                     : kMaxExactBinaryHidden);
}

bool log_z_is_exact(const Params& params, const LogZOptions& options) {
  const bool exact =
      options.method == LogZMethod::exact ||
      (options.method == LogZMethod::automatic &&
       params.hidden <= max_exact_hidden(params.hidden_type, options.max_exact_hidden));
  if (exact && !exact_log_z_possible(params)) {
    const std::string this_model = " (this model has " + std::to_string(params.hidden) + ")";
    if (params.hidden_type == HiddenType::ternary) {
      throw InputError(
          "exact log Z of a ternary model enumerates 3^H hidden states and needs H <= " +
          std::to_string(kMaxExactTernaryHidden) + this_model);
    }
    throw InputError("exact log Z needs H <= " + std::to_string(kMaxExactBinaryHidden) +
                     this_model);
  }
  return exact;
}

LogZEstimate estimate_log_z(Backend& backend, const Params& params, const LogZOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const auto seconds_since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  LogZEstimate estimate;
  const bool exact = log_z_is_exact(params, options);
  estimate.lower_bound = log_partition_lower_bound(params, options.stop);
  if (exact) {
    estimate.method = "exact";
    estimate.log_z = estimate.log_z_low = estimate.log_z_high =
        backend.exact_log_partition({options.stop, options.exact_states_done});
    estimate.seconds = seconds_since(start);
    return estimate;
  }
  if (options.ais_runs < 2) throw InputError("--ais-runs must be at least 2");
  estimate.method = "ais";
  // The images' bound only here: an exact log Z sums the same terms among all the others, and a
  // bound raised to it could pass it by rounding.
  if (options.images_lower_bound && *options.images_lower_bound > estimate.lower_bound) {
    estimate.lower_bound = *options.images_lower_bound;
    estimate.lower_bound_from_images = true;
  }
  AisRequest request;
  request.betas = ais_betas(options.ais_betas);
  request.runs = options.ais_runs;
  request.seed = options.seed;
  request.stop = options.stop;
  request.steps_done = options.ais_steps_done;
  const std::vector<float> uniform(static_cast<size_t>(params.visible), 0.0f);
  for (const bool base_rate : {true, false}) {
    const auto t0 = std::chrono::steady_clock::now();
    request.base_bias = base_rate ? options.base_rate : uniform;
    request.first_stream = base_rate ? 0 : static_cast<uint64_t>(options.ais_runs);
    const AisResult result = backend.ais(request);
    throw_if_stopped(options.stop);  // a backend need not look at it (Backend::ais's contract)
    estimate.bases.push_back({base_rate ? "base-rate" : "uniform", result.log_z_base,
                              summarize_ais(result), seconds_since(t0)});
  }
  const AisBaseReport& best = *std::max_element(estimate.bases.begin(), estimate.bases.end(),
                                                [](const AisBaseReport& l, const AisBaseReport& r) {
                                                  return l.summary.log_z < r.summary.log_z;
                                                });
  estimate.chosen_base = best.name;
  estimate.ess = best.summary.ess;
  // log Z >= lower_bound holds exactly: an estimate or a lower end below it is raised to it. An
  // upper end below it is not an upper end of anything: AIS missed mass (it errs low), and the
  // interval [bound, bound] would claim an exactness nothing supports.
  estimate.log_z = std::max(best.summary.log_z, estimate.lower_bound);
  estimate.log_z_low = std::max(best.summary.log_z_low, estimate.lower_bound);
  // Below the bound by rounding alone is not a miss: on a model whose mass is all in the bound's
  // terms (h = 0 without visible biases) AIS is exact to ~1e-13 relative, and its upper end can
  // land an ulp or a few below the bound, which sums the same terms in another order. A relative
  // slack of 1e-9 is far above that rounding and far below any mass AIS could miss.
  const double slack = 1e-9 * std::max(1.0, std::fabs(estimate.lower_bound));
  estimate.log_z_high = std::max(best.summary.log_z_high, estimate.lower_bound);
  if (best.summary.log_z_high < estimate.lower_bound - slack) {
    estimate.ais_below_bound = true;
    estimate.log_z_high = std::numeric_limits<double>::infinity();
  }
  estimate.seconds = seconds_since(start);
  return estimate;
}

}  // namespace rbm
