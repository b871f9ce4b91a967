// The model's parameters and the training recipe (design.md, "The model").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/dataset.hpp"

namespace rbm {

// The hidden units' values (design.md): binary h in {0, 1}, or the sheet's ternary h in
// {-1, 0, 1} with p(h_j = s | x) proportional to exp(s t_j) (kernels/rbm_math.h). A ternary
// model's draws are named as a binary model's (host/backend.hpp): the same uniform u of hidden
// unit j gives ternary_draw(u, t_j) instead of bernoulli(u, sigmoid(t_j)).
enum class HiddenType { binary, ternary };
const char* hidden_type_name(HiddenType type);  // "binary" or "ternary"
// Throws InputError for anything but "binary" or "ternary".
HiddenType parse_hidden_type(const std::string& text);

struct Params {
  int visible = 0;  // d
  int hidden = 0;   // H
  HiddenType hidden_type = HiddenType::binary;
  std::vector<float> W;  // (d, H), row-major
  std::vector<float> b;  // (H)
  std::vector<float> a;  // (d), empty when the model has no visible bias
  bool has_visible_bias() const { return !a.empty(); }
};

enum class LrDecay { none, linear };

// Single-sample CD-k with SGD: the reference recipe's defaults. The fields from `batch` on are
// minibatch CD / PCD's (host/minibatch.hpp); their defaults keep the single-sample path.
struct Recipe {
  int64_t iters = 25000;  // single-sample iterations, or minibatch updates
  int hidden = 100;
  float lr = 0.005f;
  int k = 3;
  uint32_t seed = 1;
  float init_std = 0.1f;
  bool visible_bias = false;
  HiddenType hidden_type = HiddenType::binary;  // init_params copies it into Params
  int batch = 1;                                // images per update B
  bool pcd = false;                             // persistent chains for the negative phase
  int64_t chains = 0;                           // PCD chains N; 0: B
  float momentum = 0.0f;                        // m in [0, 1)
  float weight_decay = 0.0f;                    // L2 on W only
  int64_t epochs = 0;                // > 0: epochs x floor(rows / B) updates instead of iters
  LrDecay lr_decay = LrDecay::none;  // linear: lr (U - u) / U at update u of U
  // The minibatch path though no field above selects it: a --batch 1 run that only --epochs put
  // there, resumed with --iters (which clears epochs; host/checkpoint.cpp), stays on it.
  bool minibatch = false;
};

// W ~ N(0, init_std^2) from Philox (key (seed, init), stream 0, Box-Muller), b = 0, and with
// recipe.visible_bias a = log(m / (1 - m)) for the training images' pixel means m clipped to
// [1e-3, 1 - 1e-3] (the bias that makes p(x_i = 1) match the data when W = 0).
Params init_params(const Recipe& recipe, const Dataset& train);

// Throws InputError when the shapes of W, b, a disagree with visible and hidden.
void check_shapes(const Params& params);

// True when every value (or every parameter) is finite.
bool all_finite(const std::vector<float>& values);
bool all_finite(const Params& params);

// The largest |pre-activation| any state can give: max over hidden units j of |b_j| + sum_i |W_ij|
// and over visible units i of |a_i| + sum_j |W_ij| (x in {0, 1}^d, |h_j| <= 1), in double. The
// float sums of a Gibbs step cannot overflow while it is below FLT_MAX (less their rounding).
double largest_preactivation(const Params& params);
// Each hidden unit's part of it: |b_j| + sum_i |W_ij|, (H), in double.
std::vector<double> hidden_reach(const Params& params);

// The first value of the parameters that is not finite, W's first (C order), then b's, then a's:
// the file that holds it ("W.npy", "b.npy", "a.npy") and where, "the value at [5, 3] (of (784,
// 20)) is nan". Nothing when all are finite.
struct NonFiniteValue {
  std::string file;
  std::string where;
};
std::optional<NonFiniteValue> first_non_finite(const Params& params);

}  // namespace rbm
