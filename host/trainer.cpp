// The `train` command (see trainer.hpp).
#include "host/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "host/atomic_file.hpp"
#include "host/errors.hpp"
#include "host/metrics.hpp"
#include "host/model_io.hpp"
#include "host/png_image.hpp"
#include "host/progress.hpp"
#include "host/sha256.hpp"

namespace rbm {
namespace {

constexpr int64_t kMetricsBatch = 500;  // images per fixed metrics batch

nlohmann::json run_record(const TrainOptions& options, const Backend& backend,
                          const std::string& data_sha256, int64_t train_rows, int64_t iteration,
                          double seconds) {
  const Recipe& r = options.recipe;
  nlohmann::json recipe = {{"iters", r.iters},
                           {"hidden", r.hidden},
                           {"lr", r.lr},
                           {"k", r.k},
                           {"seed", r.seed},
                           {"init_std", r.init_std},
                           {"visible_bias", r.visible_bias}};
  nlohmann::json data = {{"dir", options.data_dir.string()},
                         {"digit", options.digit ? nlohmann::json(*options.digit) : "all"},
                         {"split", split_name(options.split)},
                         {"rows", train_rows},
                         {"binarize", "pixel > 127.5"},
                         {"sha256", data_sha256}};
  return {{"program", "rbm"},
          {"version", RBM_VERSION},
          {"git_commit", RBM_GIT_COMMIT},
          {"backend", backend.name()},
          {"device", backend.device_description()},
          {"algorithm", "cd"},
          {"recipe", recipe},
          {"data", data},
          {"iteration", iteration},
          // The RNG is counter-based: its position is the next iteration's stream.
          {"rng", {{"generator", "philox4x32-10"}, {"seed", r.seed}, {"next_stream", iteration}}},
          {"train_seconds", seconds}};
}

std::string format_metrics(const MetricsRow& row) {
  char text[160];
  std::snprintf(text, sizeof text, "recon %.4f F(train) %.2f", row.recon_error_train,
                row.free_energy_train);
  std::string line = text;
  if (row.free_energy_heldout) {
    std::snprintf(text, sizeof text, " F(heldout) %.2f", *row.free_energy_heldout);
    line += text;
  }
  return line;
}

}  // namespace

std::optional<Split> heldout_split(Split split) {
  switch (split) {
    case Split::train:
      return Split::test;
    case Split::test:
      return Split::train;
    case Split::all:
      break;
  }
  return std::nullopt;
}

void run_training(Backend& backend, const TrainOptions& options) {
  const Recipe& recipe = options.recipe;
  const Dataset train = load_mnist(options.data_dir, options.digit, options.split);
  if (train.rows == 0) throw InputError("no training images match the digit and split");
  std::optional<Dataset> heldout;
  if (const auto other = heldout_split(options.split)) {
    heldout = fixed_batch(load_mnist(options.data_dir, options.digit, *other), kMetricsBatch);
  }
  const Dataset train_batch = fixed_batch(train, kMetricsBatch);
  const std::string data_sha256 = sha256_hex(train.pixels);

  std::error_code error;
  std::filesystem::create_directories(options.out_dir, error);
  if (error) {
    throw InputError("--out " + options.out_dir.string() + ": cannot create: " + error.message());
  }
  const auto out = [&](const char* name) { return options.out_dir / name; };
  std::string metrics_csv = metrics_csv_header();
  write_file_atomic(out("metrics.csv"), metrics_csv);  // fails early if --out is not writable

  Params params = init_params(recipe, train);
  backend.stage(train);
  backend.set_params(params);

  Progress progress("train", recipe.iters);
  // Pieces between progress updates; metrics, checkpoint and log line every log_every.
  const int64_t piece = progress.interactive()
                            ? std::clamp<int64_t>(recipe.iters / 100, 1, options.log_every)
                            : options.log_every;
  double train_seconds = 0.0;
  std::string last_metrics;
  for (int64_t done = 0; done < recipe.iters;) {
    const int64_t next_log =
        std::min(recipe.iters, (done / options.log_every + 1) * options.log_every);
    const int64_t count = std::min(piece, next_log - done);
    const auto start = std::chrono::steady_clock::now();
    backend.train_cd(recipe, done, count);
    const bool log_now = done + count == next_log;
    if (log_now) params = backend.get_params();  // also waits for an asynchronous backend
    train_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    done += count;
    if (log_now) {
      if (!all_finite(params)) {
        progress.finish();
        throw DivergenceError("training diverged: a parameter is not finite at iteration " +
                              std::to_string(done) + " (lower --lr); the last finite parameters " +
                              "are in " + options.out_dir.string());
      }
      const MetricsRow row =
          compute_metrics(params, train_batch, heldout ? &*heldout : nullptr, done, train_seconds);
      metrics_csv += metrics_csv_line(row);
      write_file_atomic(out("metrics.csv"), metrics_csv);
      write_model(options.out_dir, params);
      const nlohmann::json record =
          run_record(options, backend, data_sha256, train.rows, done, train_seconds);
      write_file_atomic(out("run.json"), record.dump(2) + "\n");
      last_metrics = format_metrics(row);
    }
    progress.update(done, last_metrics);
  }
  progress.finish();

  const GrayImage mosaic = weight_mosaic(params);
  write_png_gray(out("weights.png"), mosaic.width, mosaic.height, mosaic.pixels);
  std::printf("trained %lld iterations on %lld images with %s in %.3f s (%.2f us/iteration)\n",
              static_cast<long long>(recipe.iters), static_cast<long long>(train.rows),
              backend.name().c_str(), train_seconds,
              1e6 * train_seconds / static_cast<double>(recipe.iters));
  std::printf("wrote %s: W.npy b.npy%s weights.png metrics.csv run.json\n",
              options.out_dir.string().c_str(), params.has_visible_bias() ? " a.npy" : "");
}

}  // namespace rbm
