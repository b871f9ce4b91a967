// `sample --model DIR --out FILE.npy`: N independent Gibbs chains of K steps on the backend
// (Backend::gibbs, draws named as host/backend.hpp says), from Bernoulli(1/2) noise or from data
// images; writes the final states (N, d) as uint8 .npy, optionally a PNG grid of up to 100 chains
// and the before/after picture (each start image beside its K-step sample).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/model_io.hpp"
#include "host/npy.hpp"
#include "host/png_image.hpp"

namespace rbm {
namespace {

struct SampleFlags {
  std::string model, out, png, before_after, init = "random", data = "data/mnist", digit = "3",
                                             split = "test";
  int64_t chains = 100, steps = 1000, seed = 1;
};

// Chain c starts from image c mod n of the selection.
std::vector<uint8_t> data_states(int64_t chains, const Dataset& images) {
  const int d = images.cols();
  std::vector<uint8_t> states(static_cast<size_t>(chains) * d);
  for (int64_t c = 0; c < chains; ++c) {
    std::copy_n(images.row(c % images.rows), d, states.begin() + c * d);
  }
  return states;
}

}  // namespace

int run_sample_command(const std::string& program, const std::vector<std::string>& args) {
  CLI::App app{"run Gibbs chains of a trained model and write their final states", "sample"};
  SampleFlags f;
  app.add_option("--model", f.model, "run directory holding W.npy, b.npy [, a.npy]")->required();
  app.add_option("--chains", f.chains, "independent chains N")->capture_default_str();
  app.add_option("--steps", f.steps, "Gibbs steps x -> h -> x' per chain K")->capture_default_str();
  app.add_option("--init", f.init, "first states: random (Bernoulli(1/2)) or data (images)")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "random seed, 0..4294967295")->capture_default_str();
  app.add_option("--out", f.out, "the final states, (N, d) uint8 .npy")->required();
  app.add_option("--png", f.png, "a PNG grid of the first min(N, 100) final states");
  app.add_option("--before-after", f.before_after,
                 "a PNG of the first min(N, 50) start images, each beside its final state");
  app.add_option("--data", f.data, "directory of the MNIST IDX files (--init data)")
      ->capture_default_str();
  app.add_option("--digit", f.digit, "digit of the start images: 0..9 or all")
      ->capture_default_str();
  app.add_option("--split", f.split, "MNIST split of the start images: test, train or all")
      ->capture_default_str();
  if (const auto exit_code = parse_command_flags(app, args, program)) return *exit_code;

  require_flag(f.chains >= 1 && f.chains <= 10'000'000, "--chains", "in 1..1e7", f.chains);
  require_flag(f.steps >= 0 && f.steps <= 1'000'000'000, "--steps", "in 0..1e9", f.steps);
  require_flag(f.seed >= 0 && f.seed <= 0xFFFFFFFFll, "--seed", "in 0..4294967295", f.seed);
  if (f.init != "random" && f.init != "data") {
    throw InputError("--init must be random or data (got '" + f.init + "')");
  }
  const uint32_t seed = static_cast<uint32_t>(f.seed);

  const Params params = read_model(f.model);
  if (!all_finite(params)) throw InputError("--model " + f.model + ": a parameter is not finite");
  const int d = params.visible;
  if (static_cast<double>(f.chains) * d > 4e9) {
    throw InputError("--chains " + std::to_string(f.chains) + " x " + std::to_string(d) +
                     " units is more than 4e9 states");
  }
  std::vector<uint8_t> states;
  if (f.init == "data") {
    const Dataset images =
        load_mnist(f.data, parse_digit_flag("--digit", f.digit), parse_split(f.split));
    if (images.rows == 0) throw InputError("no images match --digit and --split");
    if (images.cols() != d) {
      throw InputError("--model " + f.model + " has " + std::to_string(d) +
                       " visible units, the images " + std::to_string(images.cols()) + " pixels");
    }
    states = data_states(f.chains, images);
  } else {
    states = random_initial_states(f.chains, d, seed);
  }
  const std::vector<uint8_t> start = states;

  std::unique_ptr<Backend> backend = make_backend();
  backend->set_params(params);
  backend->gibbs(states, f.chains, seed, 0, f.steps);

  write_npy_u8(f.out, states, {f.chains, d});
  const int n = static_cast<int>(std::min<int64_t>(f.chains, 100));
  if (!f.png.empty()) {
    const std::vector<uint8_t> first(states.begin(), states.begin() + static_cast<size_t>(n) * d);
    write_png_gray(f.png, image_grid(first, n));
  }
  if (!f.before_after.empty()) {
    const size_t count = static_cast<size_t>(std::min(n, 50)) * d;
    const std::vector<uint8_t> before(start.begin(), start.begin() + count);
    const std::vector<uint8_t> after(states.begin(), states.begin() + count);
    write_png_gray(f.before_after, before_after_grid(before, after, std::min(n, 50)));
  }
  std::printf("sampled %lld chains x %lld steps from %s starts with %s; wrote %s%s%s%s%s\n",
              static_cast<long long>(f.chains), static_cast<long long>(f.steps), f.init.c_str(),
              backend->name().c_str(), f.out.c_str(), f.png.empty() ? "" : " ", f.png.c_str(),
              f.before_after.empty() ? "" : " ", f.before_after.c_str());
  return 0;
}

}  // namespace rbm
