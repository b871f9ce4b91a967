// The model's parameters and the training recipe (design.md, "The model").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/dataset.hpp"

namespace rbm {

struct Params {
  int visible = 0;       // d
  int hidden = 0;        // H
  std::vector<float> W;  // (d, H), row-major
  std::vector<float> b;  // (H)
  std::vector<float> a;  // (d), empty when the model has no visible bias
  bool has_visible_bias() const { return !a.empty(); }
};

// Single-sample CD-k with SGD: the reference recipe's defaults.
struct Recipe {
  int64_t iters = 25000;
  int hidden = 100;
  float lr = 0.005f;
  int k = 3;
  uint32_t seed = 1;
  float init_std = 0.1f;
  bool visible_bias = false;
};

// W ~ N(0, init_std^2) from Philox (key (seed, init), stream 0, Box-Muller), b = 0, and with
// recipe.visible_bias a = log(m / (1 - m)) for the training images' pixel means m clipped to
// [1e-3, 1 - 1e-3] (the bias that makes p(x_i = 1) match the data when W = 0).
Params init_params(const Recipe& recipe, const Dataset& train);

// Throws InputError when the shapes of W, b, a disagree with visible and hidden.
void check_shapes(const Params& params);

// True when every parameter is finite.
bool all_finite(const Params& params);

}  // namespace rbm
