// What training logs to metrics.csv: reconstruction error, mean free energy and exact
// pseudo-log-likelihood on fixed batches of training and held-out images (the gap between the two
// free energies shows overfitting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/stop.hpp"

namespace rbm {

// What `train --eval-every` adds (host/train_eval.hpp): log Z and how it was obtained, and the
// log p(x) averaged over the same fixed batches.
struct EvalMetrics {
  double log_z = 0.0;
  std::string log_z_method;  // "exact", "ais" or "ais-below-bound"
  double log_p_train = 0.0;
  std::optional<double> log_p_heldout;
};

struct MetricsRow {
  int64_t iteration = 0;
  double seconds = 0.0;  // training time so far, metrics excluded
  double recon_error_train = 0.0;
  std::optional<double> recon_error_heldout;
  double free_energy_train = 0.0;
  std::optional<double> free_energy_heldout;
  double pll_train = 0.0;  // mean_pseudo_log_likelihood (host/evaluate.hpp)
  std::optional<double> pll_heldout;
  std::optional<EvalMetrics> eval;  // rows at --eval-every points
};

// Every number of the row is finite; training stops before writing a row that is not
// (host/trainer.cpp). With finite parameters the free energies always are (pre-activations that
// overflow float are summed again in double): this is a guard against a defect, not a limit.
bool metrics_finite(const MetricsRow& row);

// Up to max_rows images spread evenly over the dataset (always the same ones).
Dataset fixed_batch(const Dataset& images, int64_t max_rows);

// Throws Stopped when `stop` says so (host/evaluate.hpp: where it looks).
MetricsRow compute_metrics(const Params& params, const Dataset& train_batch,
                           const Dataset* heldout_batch, int64_t iteration, double seconds,
                           const StopRequest& stop = {});

// iteration,seconds,recon_error_train,recon_error_heldout,free_energy_train,free_energy_heldout,
// pll_train,pll_heldout; with_eval: four more, log_z,log_z_method,log_p_train,log_p_heldout, empty
// in rows without row.eval.
std::string metrics_csv_header(bool with_eval = false);
// The comma-separated fields of one metrics.csv line, trailing empty ones included (no quoting:
// its values hold no commas).
std::vector<std::string> split_fields(std::string_view line);
std::string metrics_csv_line(const MetricsRow& row, bool with_eval = false);
// A double for messages and reports: fixed with `decimals` decimals while that stays readable
// (|v| < 1e9), else (or with decimals < 0) 9 significant digits ("3.86470151e+33", "0.1"); "inf",
// "-inf" and "nan" as such (a NaN of either sign).
std::string format_number(double v, int decimals);
// A log point's metrics for the progress line: "recon 0.1191 F(train) -162.48 PLL(train) -322.76",
// then the held-out and --eval-every values the row has, each by format_number (a diverging run's
// free energy, which reaches 1e36, as "-6.09808276e+36", not 38 digits; the same text as eval's).
std::string format_metrics(const MetricsRow& row);

// metrics.csv's text (header and rows) in this version's columns: an earlier version's file (it
// had no pll columns, or had them only with --eval-every, after log_p_heldout) gets its columns
// moved by name, and empty fields for what it did not log; from the first line that is not one
// of its rows (another number of fields, no final newline) on, the text is left as it is, for the
// reader to refuse by line. Nothing when the header is neither this version's nor an earlier one's.
std::optional<std::string> metrics_csv_in_current_columns(const std::string& text);

}  // namespace rbm
