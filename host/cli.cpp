// The command line (see cli.hpp): `PROGRAM [train] FLAGS`. Every bad value gets one line naming
// the flag and the problem, and exit code 2.
#include "host/cli.hpp"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>

#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/trainer.hpp"

namespace rbm {
namespace {

constexpr int kExitBadInput = 2;
constexpr int kExitDiverged = 3;

std::string timestamp_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "runs/%Y%m%d-%H%M%S", &local);
  return text;
}

template <typename T>
void require(bool ok, const std::string& flag, const std::string& rule, T value) {
  if (ok) return;
  throw InputError(flag + " must be " + rule + " (got " + std::to_string(value) + ")");
}

std::optional<int> parse_digit(const std::string& text) {
  if (text == "all") return std::nullopt;
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '9') return text[0] - '0';
  throw InputError("--digit must be 0..9 or all (got '" + text + "')");
}

// Flags as typed, before checking; wider types than the recipe's so that checks see the value.
struct TrainFlags {
  int64_t iters = 25000, hidden = 100, k = 3, seed = 1, log_every = 5000;
  double lr = 0.005, init_std = 0.1;
  bool visible_bias = false;
  std::string data = "data/mnist", digit = "3", split = "all", out;
};

void add_train_flags(CLI::App& app, TrainFlags& f) {
  app.add_option("--iters", f.iters, "SGD iterations, one image each")->capture_default_str();
  app.add_option("--hidden", f.hidden, "hidden units H")->capture_default_str();
  app.add_option("--lr", f.lr, "learning rate")->capture_default_str();
  app.add_option("--k", f.k, "Gibbs steps of CD-k")->capture_default_str();
  app.add_option("--seed", f.seed, "random seed, 0..4294967295")->capture_default_str();
  app.add_option("--data", f.data, "directory of the MNIST IDX files")->capture_default_str();
  app.add_option("--digit", f.digit, "digit to train on: 0..9 or all")->capture_default_str();
  app.add_option("--split", f.split, "MNIST split: all (train+test), train or test")
      ->capture_default_str();
  app.add_flag("--visible-bias", f.visible_bias,
               "learn visible biases a, initialised to the data's pixel log-odds");
  app.add_option("--init-std", f.init_std, "standard deviation of the initial weights")
      ->capture_default_str();
  app.add_option("--log-every", f.log_every, "iterations between metrics and checkpoints")
      ->capture_default_str();
  app.add_option("--out", f.out, "run directory (default runs/<timestamp>)");
}

TrainOptions check_train_flags(const TrainFlags& f) {
  require(f.iters >= 1 && f.iters <= 1'000'000'000'000, "--iters", "in 1..1e12", f.iters);
  require(f.hidden >= 1 && f.hidden <= 100'000, "--hidden", "in 1..100000", f.hidden);
  require(f.k >= 1 && f.k <= 100'000, "--k", "in 1..100000", f.k);
  require(f.seed >= 0 && f.seed <= 0xFFFFFFFFll, "--seed", "in 0..4294967295", f.seed);
  require(f.log_every >= 1, "--log-every", "at least 1", f.log_every);
  require(std::isfinite(f.lr) && f.lr > 0.0 && f.lr <= 1e6, "--lr", "a finite number in (0, 1e6]",
          f.lr);
  require(std::isfinite(f.init_std) && f.init_std >= 0.0 && f.init_std <= 1e3, "--init-std",
          "a finite number in [0, 1000]", f.init_std);
  TrainOptions options;
  options.recipe.iters = f.iters;
  options.recipe.hidden = static_cast<int>(f.hidden);
  options.recipe.k = static_cast<int>(f.k);
  options.recipe.seed = static_cast<uint32_t>(f.seed);
  options.recipe.lr = static_cast<float>(f.lr);
  options.recipe.init_std = static_cast<float>(f.init_std);
  options.recipe.visible_bias = f.visible_bias;
  options.data_dir = f.data;
  options.digit = parse_digit(f.digit);
  if (f.split != "all" && f.split != "train" && f.split != "test") {
    throw InputError("--split must be all, train or test (got '" + f.split + "')");
  }
  options.split = parse_split(f.split);
  options.log_every = f.log_every;
  options.out_dir = f.out.empty() ? timestamp_dir() : f.out;
  return options;
}

}  // namespace

int run_cli(int argc, char** argv) {
  const std::string program = program_name();
  CLI::App app{program + ": train a Restricted Boltzmann Machine on binarized MNIST with " +
                   "single-sample CD-k (the reference recipe by default)",
               program};
  app.set_version_flag("--version", std::string(RBM_VERSION) + " (" + RBM_GIT_COMMIT + ")");
  TrainFlags flags;
  add_train_flags(app, flags);
  bool device_info = false;
  app.add_flag("--device-info", device_info,
               "print the device this build computes on and exit (exit code 2 if none is usable)");
  // `train` is the default command and may be named.
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "train") args.erase(args.begin());
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), e.what());
    return kExitBadInput;
  }
  try {
    if (device_info) {
      std::printf("%s\n", make_backend()->device_description().c_str());
      return 0;
    }
    const TrainOptions options = check_train_flags(flags);
    std::unique_ptr<Backend> backend = make_backend();
    run_training(*backend, options);
    return 0;
  } catch (const BackendUnavailable& e) {
    std::fprintf(stderr, "%s: %s; rbm_cpu is the CPU build of the same program\n", program.c_str(),
                 e.what());
    return kExitBadInput;
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return kExitBadInput;
  } catch (const DivergenceError& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return kExitDiverged;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", program.c_str(), e.what());
    return 1;
  }
}

}  // namespace rbm
