// A model on disk: W.npy (d, H), b.npy (H,), a.npy (d,) when it has visible biases, in a run
// directory beside run.json (design.md, "Files"). Every write is atomic.
#pragma once

#include <filesystem>

#include "host/model.hpp"

namespace rbm {

void write_model(const std::filesystem::path& dir, const Params& params);

// Reads and checks a model directory; InputError names the file and the problem (a value that is
// not finite: the file and its index). A run directory (run.json with a checkpoint) is read as
// load_checkpoint reads it: the files run.json records, each checked against its SHA-256 (a file
// that does not match: the message says how to use the files as a bare model). Otherwise W.npy,
// b.npy, [a.npy] as they are, and the hidden type is run.json's recipe.hidden_type ("binary" or
// "ternary"), binary without run.json or the key. Either way run.json's recipe.hidden, where
// recorded, must be W.npy's H. The parameters returned are finite.
Params read_model(const std::filesystem::path& dir);

}  // namespace rbm
