// What `train --eval-every N` adds to metrics.csv: log Z of the current model (exact when H is
// small, AIS with a short schedule otherwise; host/log_z.hpp), and the log p(x) of the fixed
// training and held-out batches (exact when log Z is).
#pragma once

#include <cstdint>
#include <vector>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/metrics.hpp"
#include "host/model.hpp"
#include "host/stop.hpp"

namespace rbm {

// During training: exact log Z up to this many hidden units (2^20 states: 0.2 s on 2 cores; for
// ternary units up to 12, 3^12 states: host/log_z.hpp's max_exact_hidden), AIS with kTrainAisRuns
// runs of kTrainAisBetas steps from each base above it.
constexpr int kTrainExactHidden = 20;
constexpr int64_t kTrainAisRuns = 100;
constexpr int64_t kTrainAisBetas = 1000;

// The backend must hold params; base_rate is base_rate_biases of the training images. The AIS
// draws use `seed` (the run's). Throws Stopped when `stop` says so (host/log_z.hpp: where it
// looks).
EvalMetrics evaluate_for_metrics(Backend& backend, const Params& params, const Dataset& train_batch,
                                 const Dataset* heldout_batch, const std::vector<float>& base_rate,
                                 uint32_t seed, const StopRequest& stop = {});

}  // namespace rbm
