// The error types the CLI maps to exit codes: InputError (bad flag, file or data: exit 2) and
// DivergenceError (non-finite parameters during training: exit 3).
#pragma once

#include <stdexcept>
#include <string>

namespace rbm {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DivergenceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace rbm
