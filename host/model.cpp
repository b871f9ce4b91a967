// Parameter initialization and checks (design.md, "The model" and the reference recipe).
#include "host/model.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <tuple>

#include "host/errors.hpp"
#include "kernels/philox.h"

namespace rbm {

const char* hidden_type_name(HiddenType type) {
  return type == HiddenType::ternary ? "ternary" : "binary";
}

HiddenType parse_hidden_type(const std::string& text) {
  if (text == "binary") return HiddenType::binary;
  if (text == "ternary") return HiddenType::ternary;
  throw InputError("hidden type '" + text + "' is not binary or ternary");
}

Params init_params(const Recipe& recipe, const Dataset& train) {
  Params params;
  params.visible = train.cols();
  params.hidden = recipe.hidden;
  params.hidden_type = recipe.hidden_type;
  const size_t n_weights = static_cast<size_t>(params.visible) * params.hidden;
  params.W.resize(n_weights);
  // Box-Muller on the four uniforms of block n gives normals 4n .. 4n+3.
  const uint64_t key = philox_key(recipe.seed, Purpose::init);
  for (size_t block = 0; 4 * block < n_weights; ++block) {
    const PhiloxBlock r = philox_block(key, 0, 0, static_cast<uint32_t>(block));
    double normals[4];
    for (int pair = 0; pair < 2; ++pair) {
      const double radius = std::sqrt(-2.0 * std::log(uniform_from_bits(r.word[2 * pair])));
      const double angle = 2.0 * std::numbers::pi * uniform_from_bits(r.word[2 * pair + 1]);
      normals[2 * pair] = radius * std::cos(angle);
      normals[2 * pair + 1] = radius * std::sin(angle);
    }
    for (size_t w = 0; w < 4 && 4 * block + w < n_weights; ++w) {
      params.W[4 * block + w] = static_cast<float>(recipe.init_std * normals[w]);
    }
  }
  params.b.assign(static_cast<size_t>(params.hidden), 0.0f);
  if (recipe.visible_bias) {
    const std::vector<double> means = pixel_means(train);
    params.a.resize(means.size());
    for (size_t i = 0; i < means.size(); ++i) {
      const double m = std::clamp(means[i], 1e-3, 1.0 - 1e-3);
      params.a[i] = static_cast<float>(std::log(m / (1.0 - m)));
    }
  }
  return params;
}

void check_shapes(const Params& params) {
  const auto fail = [](const std::string& what) { throw InputError("model: " + what); };
  if (params.visible <= 0 || params.hidden <= 0) fail("visible and hidden must be positive");
  if (params.W.size() != static_cast<size_t>(params.visible) * params.hidden) {
    fail("W holds " + std::to_string(params.W.size()) + " values, expected " +
         std::to_string(params.visible) + " x " + std::to_string(params.hidden));
  }
  // W's shape gives d and H (host/model_io.hpp): a b or a that disagrees says so, as either file
  // may be the wrong one.
  if (params.b.size() != static_cast<size_t>(params.hidden)) {
    fail("b holds " + std::to_string(params.b.size()) + " values, and W (" +
         std::to_string(params.visible) + " x " + std::to_string(params.hidden) +
         ") has H = " + std::to_string(params.hidden));
  }
  if (!params.a.empty() && params.a.size() != static_cast<size_t>(params.visible)) {
    fail("a holds " + std::to_string(params.a.size()) + " values, and W (" +
         std::to_string(params.visible) + " x " + std::to_string(params.hidden) +
         ") has d = " + std::to_string(params.visible));
  }
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
}

bool all_finite(const Params& params) {
  return all_finite(params.W) && all_finite(params.b) && all_finite(params.a);
}

std::vector<double> hidden_reach(const Params& params) {
  const int d = params.visible, H = params.hidden;
  std::vector<double> reach(params.b.begin(), params.b.end());  // (H) |b_j| + sum_i |W_ij|
  for (double& r : reach) r = std::fabs(r);
  for (int i = 0; i < d; ++i) {
    const float* row = params.W.data() + static_cast<size_t>(i) * H;  // W's row i, (H)
    for (int j = 0; j < H; ++j) reach[static_cast<size_t>(j)] += std::fabs(double{row[j]});
  }
  return reach;
}

double largest_preactivation(const Params& params) {
  const int d = params.visible, H = params.hidden;
  double largest = 0.0;
  for (const double r : hidden_reach(params)) largest = std::max(largest, r);
  for (int i = 0; i < d; ++i) {
    const float* row = params.W.data() + static_cast<size_t>(i) * H;  // W's row i, (H)
    double visible_reach = params.has_visible_bias() ? std::fabs(double{params.a[i]}) : 0.0;
    for (int j = 0; j < H; ++j) visible_reach += std::fabs(double{row[j]});
    largest = std::max(largest, visible_reach);
  }
  return largest;
}

std::optional<NonFiniteValue> first_non_finite(const Params& params) {
  const auto find = [](const std::vector<float>& values) {
    return std::find_if(values.begin(), values.end(), [](float x) { return !std::isfinite(x); }) -
           values.begin();
  };
  const auto value_text = [](float x) {
    return std::string(std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
  };
  const std::string d = std::to_string(params.visible), H = std::to_string(params.hidden);
  if (const auto i = static_cast<size_t>(find(params.W)); i < params.W.size()) {
    const size_t H_size = static_cast<size_t>(std::max(params.hidden, 1));
    return NonFiniteValue{"W.npy", "the value at [" + std::to_string(i / H_size) + ", " +
                                       std::to_string(i % H_size) + "] (of (" + d + ", " + H +
                                       ")) is " + value_text(params.W[i])};
  }
  for (const auto& [file, values, length] :
       {std::tuple{"b.npy", &params.b, H}, std::tuple{"a.npy", &params.a, d}}) {
    if (const auto i = static_cast<size_t>(find(*values)); i < values->size()) {
      return NonFiniteValue{file, "the value at [" + std::to_string(i) + "] (of (" + length +
                                      ",)) is " + value_text((*values)[i])};
    }
  }
  return std::nullopt;
}

}  // namespace rbm
