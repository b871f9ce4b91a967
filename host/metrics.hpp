// What training logs to metrics.csv: reconstruction error and mean free energy on fixed batches
// of training and held-out images (the gap between the two free energies shows overfitting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "host/dataset.hpp"
#include "host/model.hpp"

namespace rbm {

// What `train --eval-every` adds (host/train_eval.hpp): log Z and how it was obtained, the exact
// log p(x) and pseudo-log-likelihood averaged over the same fixed batches.
struct EvalMetrics {
  double log_z = 0.0;
  std::string log_z_method;  // "exact" or "ais"
  double log_p_train = 0.0;
  std::optional<double> log_p_heldout;
  double pll_train = 0.0;
  std::optional<double> pll_heldout;
};

struct MetricsRow {
  int64_t iteration = 0;
  double seconds = 0.0;  // training time so far, metrics excluded
  double recon_error_train = 0.0;
  std::optional<double> recon_error_heldout;
  double free_energy_train = 0.0;
  std::optional<double> free_energy_heldout;
  std::optional<EvalMetrics> eval;  // rows at --eval-every points
};

// Every number of the row is finite; training stops before writing a row that is not
// (host/trainer.cpp). With finite parameters the free energies always are (pre-activations that
// overflow float are summed again in double): this is a guard against a defect, not a limit.
bool metrics_finite(const MetricsRow& row);

// Up to max_rows images spread evenly over the dataset (always the same ones).
Dataset fixed_batch(const Dataset& images, int64_t max_rows);

MetricsRow compute_metrics(const Params& params, const Dataset& train_batch,
                           const Dataset* heldout_batch, int64_t iteration, double seconds);

// with_eval: six more columns, log_z,log_z_method,log_p_train,log_p_heldout,pll_train,pll_heldout,
// empty in rows without row.eval.
std::string metrics_csv_header(bool with_eval = false);
std::string metrics_csv_line(const MetricsRow& row, bool with_eval = false);

}  // namespace rbm
