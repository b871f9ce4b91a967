// The `train` command: data, initialization, the backend's training loop in pieces between
// metrics, and the run directory (W.npy, b.npy, [a.npy], weights.png, metrics.csv, run.json).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"

namespace rbm {

struct TrainOptions {
  Recipe recipe;
  std::filesystem::path data_dir = "data/mnist";
  std::optional<int> digit = 3;  // empty: all ten digits
  Split split = Split::all;
  int64_t log_every = 5000;
  std::filesystem::path out_dir;
};

// The held-out images for a split: the other split of the same digits (none for Split::all).
std::optional<Split> heldout_split(Split split);

// Trains and writes the run directory. Throws InputError (bad data or output directory) and
// DivergenceError (non-finite parameters; the last finite ones stay on disk).
void run_training(Backend& backend, const TrainOptions& options);

}  // namespace rbm
