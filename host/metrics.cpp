// Training metrics (see metrics.hpp).
#include "host/metrics.hpp"

#include <algorithm>
#include <cmath>
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

bool metrics_finite(const MetricsRow& row) {
  const auto finite = [](const std::optional<double>& v) { return !v || std::isfinite(*v); };
  bool all = std::isfinite(row.recon_error_train) && std::isfinite(row.free_energy_train) &&
             finite(row.recon_error_heldout) && finite(row.free_energy_heldout);
  if (row.eval) {
    const EvalMetrics& e = *row.eval;
    all = all && std::isfinite(e.log_z) && std::isfinite(e.log_p_train) &&
          std::isfinite(e.pll_train) && finite(e.log_p_heldout) && finite(e.pll_heldout);
  }
  return all;
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

std::string metrics_csv_header(bool with_eval) {
  return std::string(
             "iteration,seconds,recon_error_train,recon_error_heldout,free_energy_train,"
             "free_energy_heldout") +
         (with_eval ? ",log_z,log_z_method,log_p_train,log_p_heldout,pll_train,pll_heldout" : "") +
         "\n";
}

std::string metrics_csv_line(const MetricsRow& row, bool with_eval) {
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
  std::string line = std::string(head) + optional_value(row.recon_error_heldout) + "," +
                     train_energy + "," + optional_value(row.free_energy_heldout);
  if (with_eval) {
    // Nats to 1e-4 at least (log Z of MNIST models is ~500).
    const auto precise = [](const std::optional<double>& v) {
      char text[32] = "";
      if (v) std::snprintf(text, sizeof text, "%.9g", *v);
      return std::string(text);
    };
    const std::optional<EvalMetrics>& e = row.eval;
    line += "," + precise(e ? std::optional(e->log_z) : std::nullopt) + "," +
            (e ? e->log_z_method : "") + "," +
            precise(e ? std::optional(e->log_p_train) : std::nullopt) + "," +
            precise(e ? e->log_p_heldout : std::nullopt) + "," +
            precise(e ? std::optional(e->pll_train) : std::nullopt) + "," +
            precise(e ? e->pll_heldout : std::nullopt);
  }
  return line + "\n";
}

}  // namespace rbm
