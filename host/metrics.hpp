// What training logs to metrics.csv: reconstruction error and mean free energy on fixed batches
// of training and held-out images (the gap between the two free energies shows overfitting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "host/dataset.hpp"
#include "host/model.hpp"

namespace rbm {

struct MetricsRow {
  int64_t iteration = 0;
  double seconds = 0.0;  // training time so far, metrics excluded
  double recon_error_train = 0.0;
  std::optional<double> recon_error_heldout;
  double free_energy_train = 0.0;
  std::optional<double> free_energy_heldout;
};

// Up to max_rows images spread evenly over the dataset (always the same ones).
Dataset fixed_batch(const Dataset& images, int64_t max_rows);

MetricsRow compute_metrics(const Params& params, const Dataset& train_batch,
                           const Dataset* heldout_batch, int64_t iteration, double seconds);

std::string metrics_csv_header();
std::string metrics_csv_line(const MetricsRow& row);

}  // namespace rbm
