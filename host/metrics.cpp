// Training metrics (see metrics.hpp).
#include "host/metrics.hpp"

#include <algorithm>
#include <cstdio>

#include "host/evaluate.hpp"

namespace rbm {

Dataset fixed_batch(const Dataset& images, int64_t max_rows) {
  Dataset batch;
  batch.width = images.width;
  batch.height = images.height;
  batch.rows = std::min(images.rows, max_rows);
  const int d = images.cols();
  batch.pixels.resize(static_cast<size_t>(batch.rows) * d);
  batch.labels.resize(static_cast<size_t>(batch.rows));
  for (int64_t r = 0; r < batch.rows; ++r) {
    const int64_t source = r * images.rows / batch.rows;
    std::copy_n(images.row(source), d, batch.pixels.begin() + r * d);
    batch.labels[r] = images.labels[source];
  }
  return batch;
}

MetricsRow compute_metrics(const Params& params, const Dataset& train_batch,
                           const Dataset* heldout_batch, int64_t iteration, double seconds) {
  MetricsRow row;
  row.iteration = iteration;
  row.seconds = seconds;
  row.recon_error_train = reconstruction_error(params, train_batch);
  row.free_energy_train = mean_free_energy(params, train_batch);
  if (heldout_batch != nullptr) {
    row.recon_error_heldout = reconstruction_error(params, *heldout_batch);
    row.free_energy_heldout = mean_free_energy(params, *heldout_batch);
  }
  return row;
}

std::string metrics_csv_header() {
  return "iteration,seconds,recon_error_train,recon_error_heldout,free_energy_train,"
         "free_energy_heldout\n";
}

std::string metrics_csv_line(const MetricsRow& row) {
  const auto optional_value = [](const std::optional<double>& v) {
    char text[32] = "";
    if (v) std::snprintf(text, sizeof text, "%.6g", *v);
    return std::string(text);
  };
  char head[96];
  std::snprintf(head, sizeof head, "%lld,%.4f,%.6g,", static_cast<long long>(row.iteration),
                row.seconds, row.recon_error_train);
  char train_energy[32];
  std::snprintf(train_energy, sizeof train_energy, "%.6g", row.free_energy_train);
  return std::string(head) + optional_value(row.recon_error_heldout) + "," + train_energy + "," +
         optional_value(row.free_energy_heldout) + "\n";
}

}  // namespace rbm
