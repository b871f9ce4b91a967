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
#include "host/checkpoint.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/signals.hpp"
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
  int64_t eval_every = 0;                   // 0: no log-likelihood columns (host/train_eval.hpp)
  std::optional<int64_t> checkpoint_every;  // default: log_every
  double lr = 0.005, init_std = 0.1;
  bool visible_bias = false;
  // Minibatch CD / PCD (host/minibatch.hpp).
  int64_t batch = 1, chains = 0, epochs = 0;
  double momentum = 0.0, weight_decay = 0.0;
  bool pcd = false;
  std::string lr_decay = "none";
  std::string hidden_type = "binary";  // host/model.hpp's HiddenType
  std::string engine;                  // empty: the build's default (host/backend.hpp)
  std::string data = "data/mnist", digit = "3", split = "all", out, resume;
};

void add_train_flags(CLI::App& app, TrainFlags& f) {
  app.add_option("--iters", f.iters, "SGD iterations, one image each")->capture_default_str();
  app.add_option("--hidden", f.hidden, "hidden units H")->capture_default_str();
  app.add_option("--engine", f.engine,
                 "rbm_cuda's single-sample trainer: gemv (cuBLAS, the default) or fused (one "
                 "persistent kernel); rbm_cpu has one engine");
  app.add_option("--hidden-type", f.hidden_type,
                 "hidden units: binary (h in {0, 1}) or ternary (h in {-1, 0, 1})")
      ->capture_default_str();
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
  app.add_option("--batch", f.batch,
                 "images per update B; B > 1 (or any flag below) trains with minibatch GEMMs, "
                 "and --iters counts updates")
      ->capture_default_str();
  app.add_flag("--pcd", f.pcd, "persistent contrastive divergence: persistent negative chains");
  app.add_option("--chains", f.chains, "PCD chains (default: --batch)");
  app.add_option("--momentum", f.momentum, "momentum m in [0, 1)")->capture_default_str();
  app.add_option("--weight-decay", f.weight_decay, "L2 weight decay on W")->capture_default_str();
  app.add_option("--epochs", f.epochs,
                 "passes over the shuffled training images, instead of --iters");
  app.add_option("--lr-decay", f.lr_decay, "learning-rate schedule: none or linear (to 0)")
      ->capture_default_str();
  app.add_option("--log-every", f.log_every, "iterations between metrics")->capture_default_str();
  app.add_option("--eval-every", f.eval_every,
                 "iterations between log-likelihood and pseudo-likelihood metrics (a multiple of "
                 "--log-every; log Z exact for H <= 20, ternary H <= 12, else short AIS); 0: none")
      ->capture_default_str();
  app.add_option_function<int64_t>(
      "--checkpoint-every", [&f](const int64_t& value) { f.checkpoint_every = value; },
      "iterations between checkpoints (default: --log-every); one is also written at "
      "the start, at the end and on SIGINT or SIGTERM");
  app.add_option("--out", f.out, "run directory (default runs/<timestamp>)");
  app.add_option("--resume", f.resume,
                 "continue the run in DIR from its checkpoint, with the flags it was started with; "
                 "only --iters (to extend it) and --data (the same images elsewhere) may be given");
  // CLI11 reads an empty value as 0 (a valid --seed) or as an empty path: refuse it instead.
  const CLI::Validator not_empty(
      [](std::string& value) { return value.empty() ? std::string("empty value") : std::string(); },
      "", "not empty");
  for (CLI::Option* option : app.get_options()) {
    if (option->get_expected_min() > 0 && option->get_type_size_min() > 0) {
      option->check(not_empty);
    }
  }
}

// Training flags that --resume takes from the run directory instead.
constexpr const char* kRecordedFlags[] = {
    "--hidden",       "--lr",           "--k",        "--seed",       "--digit",
    "--split",        "--visible-bias", "--init-std", "--log-every",  "--checkpoint-every",
    "--out",          "--batch",        "--pcd",      "--chains",     "--momentum",
    "--weight-decay", "--epochs",       "--lr-decay", "--eval-every", "--hidden-type"};

TrainOptions resume_train_flags(const CLI::App& app, const TrainFlags& f) {
  for (const char* flag : kRecordedFlags) {
    if (app.count(flag) > 0) {
      throw InputError(std::string(flag) + " cannot be combined with --resume: the run keeps the " +
                       "flags it was started with (see " + f.resume + "/run.json)");
    }
  }
  std::optional<int64_t> iters;
  if (app.count("--iters") > 0) {
    require(f.iters >= 1 && f.iters <= 1'000'000'000'000, "--iters", "in 1..1e12", f.iters);
    iters = f.iters;
  }
  std::optional<std::filesystem::path> data;
  if (app.count("--data") > 0) data = f.data;
  return resume_options(f.resume, iters, data);
}

TrainOptions check_train_flags(const TrainFlags& f) {
  require(f.iters >= 1 && f.iters <= 1'000'000'000'000, "--iters", "in 1..1e12", f.iters);
  require(f.hidden >= 1 && f.hidden <= 100'000, "--hidden", "in 1..100000", f.hidden);
  require(f.k >= 1 && f.k <= 100'000, "--k", "in 1..100000", f.k);
  require(f.seed >= 0 && f.seed <= 0xFFFFFFFFll, "--seed", "in 0..4294967295", f.seed);
  require(f.log_every >= 1 && f.log_every <= 1'000'000'000'000, "--log-every", "in 1..1e12",
          f.log_every);
  require(f.eval_every >= 0 && f.eval_every % f.log_every == 0, "--eval-every",
          "0 or a multiple of --log-every", f.eval_every);
  if (f.checkpoint_every) {
    require(*f.checkpoint_every >= 1 && *f.checkpoint_every <= 1'000'000'000'000,
            "--checkpoint-every", "in 1..1e12", *f.checkpoint_every);
  }
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
  if (f.hidden_type != "binary" && f.hidden_type != "ternary") {
    throw InputError("--hidden-type must be binary or ternary (got '" + f.hidden_type + "')");
  }
  options.recipe.hidden_type = parse_hidden_type(f.hidden_type);
  require(f.batch >= 1 && f.batch <= 1'000'000, "--batch", "in 1..1000000", f.batch);
  require(f.chains >= 0 && f.chains <= 100'000'000, "--chains", "in 1..1e8", f.chains);
  if (f.chains > 0 && !f.pcd) throw InputError("--chains needs --pcd (CD's chains are the batch)");
  require(f.epochs >= 0 && f.epochs <= 1'000'000, "--epochs", "in 1..1000000", f.epochs);
  require(std::isfinite(f.momentum) && f.momentum >= 0.0 && f.momentum < 1.0, "--momentum",
          "in [0, 1)", f.momentum);
  require(std::isfinite(f.weight_decay) && f.weight_decay >= 0.0 && f.weight_decay <= 1e3,
          "--weight-decay", "in [0, 1000]", f.weight_decay);
  if (f.lr_decay != "none" && f.lr_decay != "linear") {
    throw InputError("--lr-decay must be none or linear (got '" + f.lr_decay + "')");
  }
  options.recipe.batch = static_cast<int>(f.batch);
  options.recipe.pcd = f.pcd;
  options.recipe.chains = f.chains;
  options.recipe.epochs = f.epochs;
  options.recipe.momentum = static_cast<float>(f.momentum);
  options.recipe.weight_decay = static_cast<float>(f.weight_decay);
  options.recipe.lr_decay = f.lr_decay == "linear" ? LrDecay::linear : LrDecay::none;
  options.data_dir = f.data;
  options.digit = parse_digit(f.digit);
  if (f.split != "all" && f.split != "train" && f.split != "test") {
    throw InputError("--split must be all, train or test (got '" + f.split + "')");
  }
  options.split = parse_split(f.split);
  options.log_every = f.log_every;
  options.checkpoint_every = f.checkpoint_every.value_or(f.log_every);
  options.eval_every = f.eval_every;
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
  // `eval` and `sample` parse their own flags (host/commands.hpp); train's are parsed here.
  const bool eval = !args.empty() && args.front() == "eval";
  const bool sample = !args.empty() && args.front() == "sample";
  const std::vector<std::string> command_args(args.begin() + (eval || sample ? 1 : 0), args.end());
  app.footer("Other commands: " + program + " eval --help, " + program + " sample --help");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
  try {
    if (!eval && !sample) app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), e.what());
    return kExitBadInput;
  }
  try {
    if (eval) return run_eval_command(program, command_args);
    if (sample) return run_sample_command(program, command_args);
    if (device_info) {
      std::printf("%s\n", make_backend()->device_description().c_str());
      return 0;
    }
    const TrainOptions options =
        app.count("--resume") == 0 ? check_train_flags(flags) : resume_train_flags(app, flags);
    std::unique_ptr<Backend> backend = make_backend(flags.engine);
    run_training(*backend, options);
    return 0;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return 128 + e.signal;  // the shell's code for a death by that signal: 130, 143
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
