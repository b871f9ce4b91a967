// The `train` command: data, initialization, the backend's training loop in pieces between
// metrics, and the run directory (W.npy, b.npy, [a.npy], weights.png, metrics.csv, run.json).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"

namespace rbm {

// Where a resumed run starts (host/checkpoint.hpp reads it from the run directory).
struct ResumeFrom {
  int64_t iteration = 0;
  Params params;
  TrainingState state;  // momentum velocities and PCD chains of a minibatch run
  double train_seconds = 0.0;
  std::string metrics_csv;  // the header and the rows up to `iteration`
  // `iteration` is a log point of the run that wrote the checkpoint (a multiple of its log_every,
  // or the end it recorded) and metrics_csv lacks its row: a signal stopped that point's metrics
  // (host/trainer.cpp), or run.json says so (metrics_row_missing: a resumed run stopped in that
  // row wrote the checkpoint again with its own --iters, which can move the end). The resumed run
  // computes the row first, from `params`: the state the row describes. row_with_eval: the point
  // is also an --eval-every point.
  bool row_missing = false;
  bool row_with_eval = false;
  // run.json records metrics_row_missing: once the row exists the checkpoint is written again,
  // without it. (Without the field, nothing in the checkpoint depends on the row.)
  bool row_missing_recorded = false;
  // --iters made `iteration` the run's end, before the end the checkpoint recorded (a run that a
  // signal stopped, finished where it stopped): the end's row (row_missing) unless metrics_csv has
  // it, and the checkpoint written again, so that run.json records the new end.
  bool ends_here = false;
  std::string data_sha256;  // of the run's training images; other images are refused
  // Of its held-out images (the other split of --split train or test), when run.json records it.
  std::optional<std::string> heldout_sha256;
  // Taken before the checkpoint was read and the directory tidied, held to the end of training.
  std::shared_ptr<const DirectoryLock> lock;
};

// The most iterations (and the longest --log-every, --checkpoint-every) a run may ask for.
constexpr int64_t kMaxIters = 1'000'000'000'000;

struct TrainOptions {
  Recipe recipe;
  std::filesystem::path data_dir = "data/mnist";
  std::optional<int> digit = 3;  // empty: all ten digits
  Split split = Split::all;
  int64_t log_every = 5000;
  int64_t checkpoint_every = 0;  // 0: every log_every
  int64_t eval_every = 0;        // 0: never; else a multiple of log_every (host/train_eval.hpp)
  std::filesystem::path out_dir;
  // out_dir is the default name (runs/<timestamp>), not one the user gave: the run takes the first
  // of NAME, NAME-2, NAME-3, ... that no other run has (two runs started in the same second).
  bool out_dir_is_default = false;
  std::optional<ResumeFrom> resume;
  std::string program = "rbm";  // the messages' prefix: "rbm_cpu" or "rbm_cuda"
};

// The held-out images for a split: the other split of the same digits (none for Split::all).
std::optional<Split> heldout_split(Split split);

// Trains (or continues options.resume) and writes the run directory, with a checkpoint
// (host/checkpoint.hpp) at iteration 0, every checkpoint_every iterations and at the end. Throws
// InputError (bad data or output directory), DivergenceError (a non-finite parameter or metric;
// the last good checkpoint stays on disk) and, on SIGINT, SIGTERM or SIGHUP, Interrupted
// (host/signals.hpp) after writing a checkpoint at the iteration reached. A signal during a log
// point's metrics stops them (host/stop.hpp); the checkpoint is then at that point, without its
// row, which the resumed run computes first (ResumeFrom::row_missing).
void run_training(Backend& backend, const TrainOptions& options);

}  // namespace rbm
