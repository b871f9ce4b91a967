// Training metrics (see metrics.hpp).
#include "host/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <vector>

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
             std::isfinite(row.pll_train) && finite(row.recon_error_heldout) &&
             finite(row.free_energy_heldout) && finite(row.pll_heldout);
  if (row.eval) {
    const EvalMetrics& e = *row.eval;
    all = all && std::isfinite(e.log_z) && std::isfinite(e.log_p_train) && finite(e.log_p_heldout);
  }
  return all;
}

MetricsRow compute_metrics(const Params& params, const Dataset& train_batch,
                           const Dataset* heldout_batch, int64_t iteration, double seconds,
                           const StopRequest& stop) {
  MetricsRow row;
  row.iteration = iteration;
  row.seconds = seconds;
  row.recon_error_train = reconstruction_error(params, train_batch, stop);
  row.free_energy_train = mean_free_energy(params, train_batch, stop);
  row.pll_train = mean_pseudo_log_likelihood(params, train_batch, stop);
  if (heldout_batch != nullptr) {
    row.recon_error_heldout = reconstruction_error(params, *heldout_batch, stop);
    row.free_energy_heldout = mean_free_energy(params, *heldout_batch, stop);
    row.pll_heldout = mean_pseudo_log_likelihood(params, *heldout_batch, stop);
  }
  return row;
}

namespace {

constexpr const char* kBaseColumns =
    "iteration,seconds,recon_error_train,recon_error_heldout,free_energy_train,"
    "free_energy_heldout";
constexpr const char* kEvalColumns = ",log_z,log_z_method,log_p_train,log_p_heldout";

}  // namespace

std::vector<std::string> split_fields(std::string_view line) {
  std::vector<std::string> fields;
  for (size_t begin = 0;;) {
    const size_t comma = line.find(',', begin);
    fields.emplace_back(
        line.substr(begin, comma == std::string_view::npos ? comma : comma - begin));
    if (comma == std::string_view::npos) return fields;
    begin = comma + 1;
  }
}

std::string metrics_csv_header(bool with_eval) {
  return std::string(kBaseColumns) + ",pll_train,pll_heldout" + (with_eval ? kEvalColumns : "") +
         "\n";
}

std::optional<std::string> metrics_csv_in_current_columns(const std::string& text) {
  const std::string header = text.substr(0, text.find('\n') + 1);
  if (header == metrics_csv_header(false) || header == metrics_csv_header(true)) return text;
  // The earlier versions' headers: PLL only at --eval-every points, as the last two columns.
  const std::string earlier = std::string(kBaseColumns) + "\n";
  const std::string earlier_eval =
      std::string(kBaseColumns) + kEvalColumns + ",pll_train,pll_heldout\n";
  if (header != earlier && header != earlier_eval) return std::nullopt;
  const std::string now = metrics_csv_header(header == earlier_eval);
  const std::vector<std::string> from = split_fields(header.substr(0, header.size() - 1));
  const std::vector<std::string> to = split_fields(now.substr(0, now.size() - 1));
  std::string converted = now;
  for (size_t pos = header.size(); pos < text.size();) {
    const size_t newline = text.find('\n', pos);
    const size_t end = std::min(newline, text.size());
    const std::string_view line = std::string_view(text).substr(pos, end - pos);
    const std::vector<std::string> fields = split_fields(line);
    if (newline == std::string::npos || fields.size() != from.size()) {
      // Not a row of that version: left as it is, for the reader's checks to name its line.
      converted += text.substr(pos);
      break;
    }
    for (size_t k = 0; k < to.size(); ++k) {
      const auto at = std::find(from.begin(), from.end(), to[k]);
      if (k > 0) converted += ',';
      if (at != from.end()) converted += fields[static_cast<size_t>(at - from.begin())];
    }
    converted += '\n';
    pos = end + 1;
  }
  return converted;
}

std::string format_number(double v, int decimals) {
  char text[64];
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (decimals >= 0 && std::fabs(v) < 1e9) {
    std::snprintf(text, sizeof text, "%.*f", decimals, v);
  } else {
    std::snprintf(text, sizeof text, "%.9g", v);
  }
  return text;
}

std::string format_metrics(const MetricsRow& row) {
  std::string line = "recon " + format_number(row.recon_error_train, 4) + " F(train) " +
                     format_number(row.free_energy_train, 2) + " PLL(train) " +
                     format_number(row.pll_train, 2);
  if (row.free_energy_heldout && row.pll_heldout) {
    line += " F(heldout) " + format_number(*row.free_energy_heldout, 2) + " PLL(heldout) " +
            format_number(*row.pll_heldout, 2);
  }
  if (row.eval) {  // --eval-every's points
    line += " log Z " + format_number(row.eval->log_z, 2) + " (" + row.eval->log_z_method +
            ") log p(train) " + format_number(row.eval->log_p_train, 2);
    if (row.eval->log_p_heldout)
      line += " log p(heldout) " + format_number(*row.eval->log_p_heldout, 2);
  }
  return line;
}

std::string metrics_csv_line(const MetricsRow& row, bool with_eval) {
  // Reconstruction errors (in [0, 1]) to 6 significant digits; free energies and log-likelihoods
  // to 9, 1e-6 nats at the hundreds of an MNIST model, so that the free-energy gap (held-out minus
  // training, a few nats) and a curve's last digits are the run's, not the rounding's.
  const auto value_text = [](const std::optional<double>& v, int digits) {
    char text[40] = "";
    if (v) std::snprintf(text, sizeof text, "%.*g", digits, *v);
    return std::string(text);
  };
  const auto precise = [&](const std::optional<double>& v) { return value_text(v, 9); };
  char head[96];
  std::snprintf(head, sizeof head, "%lld,%.4f,%.6g,", static_cast<long long>(row.iteration),
                row.seconds, row.recon_error_train);
  std::string line = std::string(head) + value_text(row.recon_error_heldout, 6) + "," +
                     precise(row.free_energy_train) + "," + precise(row.free_energy_heldout) + "," +
                     precise(row.pll_train) + "," + precise(row.pll_heldout);
  if (with_eval) {
    const std::optional<EvalMetrics>& e = row.eval;
    line += "," + precise(e ? std::optional(e->log_z) : std::nullopt) + "," +
            (e ? e->log_z_method : "") + "," +
            precise(e ? std::optional(e->log_p_train) : std::nullopt) + "," +
            precise(e ? e->log_p_heldout : std::nullopt);
  }
  return line + "\n";
}

}  // namespace rbm
