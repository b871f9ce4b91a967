// `train --eval-every` (see train_eval.hpp).
#include "host/train_eval.hpp"

#include "host/evaluate.hpp"
#include "host/log_z.hpp"

namespace rbm {

EvalMetrics evaluate_for_metrics(Backend& backend, const Params& params, const Dataset& train_batch,
                                 const Dataset* heldout_batch, const std::vector<float>& base_rate,
                                 uint32_t seed, const StopRequest& stop) {
  LogZOptions options;
  options.max_exact_hidden = kTrainExactHidden;
  options.ais_runs = kTrainAisRuns;
  options.ais_betas = kTrainAisBetas;
  options.seed = seed;
  options.base_rate = base_rate;
  options.stop = stop;
  const LogZEstimate log_z = estimate_log_z(backend, params, options);
  EvalMetrics metrics;
  metrics.log_z = log_z.log_z;
  // A log Z that is only the exact lower bound (log_z.hpp) is named so: log p is then an upper end.
  metrics.log_z_method = log_z.ais_below_bound ? "ais-below-bound" : log_z.method;
  metrics.log_p_train = mean_log_prob(params, train_batch, log_z.log_z, stop);
  if (heldout_batch != nullptr) {
    metrics.log_p_heldout = mean_log_prob(params, *heldout_batch, log_z.log_z, stop);
  }
  return metrics;
}

}  // namespace rbm
