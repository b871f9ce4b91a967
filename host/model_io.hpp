// A model on disk: W.npy (d, H), b.npy (H,), a.npy (d,) when it has visible biases, in a run
// directory beside run.json (design.md, "Files"). Every write is atomic.
#pragma once

#include <filesystem>

#include "host/model.hpp"

namespace rbm {

void write_model(const std::filesystem::path& dir, const Params& params);

// Reads and checks a model directory; InputError names the file and the problem. The hidden type
// is run.json's recipe.hidden_type ("binary" or "ternary"), binary without run.json or the key.
Params read_model(const std::filesystem::path& dir);

}  // namespace rbm
