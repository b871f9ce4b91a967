// The command line (see cli.hpp): `PROGRAM [train] FLAGS`. Every bad value gets one line naming
// the flag and the problem, and exit code 2.
#include "host/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <new>
#include <string>
#include <system_error>

#include "host/backend.hpp"
#include "host/checkpoint.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/minibatch.hpp"
#include "host/signals.hpp"
#include "host/trainer.hpp"
#include "host/version.hpp"

namespace rbm {
namespace {

std::string timestamp_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "runs/%Y%m%d-%H%M%S", &local);
  return text;
}

// Flags as typed, checked by check_train_flags (host/command_flags.hpp's parsers): numbers stay
// text until then, so that a message can quote what was typed. An empty text is a flag not given
// (an empty value is refused while parsing).
struct TrainFlags {
  std::string iters = "25000", hidden = "100", k = "3", seed = "1", log_every = "5000";
  std::string eval_every = "0";  // 0: no log-likelihood columns (host/train_eval.hpp)
  std::string checkpoint_every;  // default: log_every
  std::string lr = "0.005", init_std = "0.1";
  bool visible_bias = false;
  // Minibatch CD / PCD (host/minibatch.hpp).
  std::string batch = "1", chains, epochs;  // chains: default --batch; epochs: default --iters
  std::string momentum = "0", weight_decay = "0";
  bool pcd = false;
  std::string lr_decay = "none";
  std::string hidden_type = "binary";  // host/model.hpp's HiddenType
  std::string engine;                  // empty: the build's default (host/backend.hpp)
  std::string data = "data/mnist", digit = "3", split = "all", out, resume;
};

void add_train_flags(CLI::App& app, TrainFlags& f, const std::string& program) {
  app.add_option("--iters", f.iters,
                 "SGD iterations, one image each (updates of --batch images on the minibatch "
                 "path), 1..1e12")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--hidden", f.hidden, "hidden units H, 1..100000")
      ->capture_default_str()
      ->type_name("H");
  // rbm_cpu has one engine and refuses the flag; it keeps it (rather than hiding it, which would
  // leave CLI11's messages without its name) and says so.
  app.add_option("--engine", f.engine,
                 std::string(program == "rbm_cuda" ? "" : "rbm_cuda only: ") +
                     "single-sample trainer: fused (one persistent kernel; the default where the "
                     "device and model allow it, else gemv) or gemv (cuBLAS)")
      ->type_name("ENGINE");
  app.add_option("--hidden-type", f.hidden_type,
                 "hidden units: binary (h in {0, 1}) or ternary (h in {-1, 0, 1})")
      ->capture_default_str()
      ->type_name("TYPE");
  app.add_option("--lr", f.lr, "learning rate, in (0, 1e6]")->capture_default_str()->type_name("R");
  app.add_option("--k", f.k, "Gibbs steps of CD-k, 1..100000")
      ->capture_default_str()
      ->type_name("K");
  app.add_option("--seed", f.seed, "random seed, 0..4294967295")
      ->capture_default_str()
      ->type_name("S");
  app.add_option("--data", f.data, "directory of the MNIST IDX files (raw or .gz)")
      ->capture_default_str()
      ->type_name("DIR");
  app.add_option("--digit", f.digit, "digit to train on: 0..9 or all")
      ->capture_default_str()
      ->type_name("DIGIT");
  app.add_option("--split", f.split, "MNIST split: all (train+test), train or test")
      ->capture_default_str()
      ->type_name("SPLIT");
  app.add_flag("--visible-bias", f.visible_bias,
               "learn visible biases a, initialised to the data's pixel log-odds");
  app.add_option("--init-std", f.init_std,
                 "standard deviation of the initial weights, in [0, 1000]")
      ->capture_default_str()
      ->type_name("SD");
  app.add_option("--batch", f.batch,
                 std::string("images per update B, 1..1000000; ") + kMinibatchFlags +
                     " trains with minibatch GEMMs, and --iters counts updates")
      ->capture_default_str()
      ->type_name("B");
  app.add_flag("--pcd", f.pcd, "persistent contrastive divergence: persistent negative chains");
  app.add_option("--chains", f.chains, "PCD chains, 1..1e8 (default: --batch)")->type_name("N");
  app.add_option("--momentum", f.momentum, "momentum m in [0, 1)")
      ->capture_default_str()
      ->type_name("M");
  app.add_option("--weight-decay", f.weight_decay, "L2 weight decay on W, in [0, 1000]")
      ->capture_default_str()
      ->type_name("WD");
  app.add_option("--epochs", f.epochs,
                 "passes over the shuffled training images, 1..1000000, instead of --iters")
      ->type_name("E");
  app.add_option("--lr-decay", f.lr_decay, "learning-rate schedule: none or linear (to 0)")
      ->capture_default_str()
      ->type_name("SCHEDULE");
  app.add_option("--log-every", f.log_every,
                 "iterations between metrics (reconstruction error, free energy, exact "
                 "pseudo-log-likelihood)")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--eval-every", f.eval_every,
                 "iterations between log Z and log-likelihood metrics (a multiple of "
                 "--log-every; log Z exact for H <= 20, ternary H <= 12, else short AIS); 0: none")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--checkpoint-every", f.checkpoint_every,
                 "iterations between checkpoints (default: --log-every); one is also written at "
                 "the start, at the end and on SIGINT, SIGTERM or SIGHUP")
      ->type_name("N");
  app.add_option("--out", f.out, "run directory (default runs/<timestamp>)")->type_name("DIR");
  app.add_option("--resume", f.resume,
                 "continue the run in DIR from its checkpoint, with the flags it was started with; "
                 "only --iters (to extend it), --data (the same images elsewhere) and rbm_cuda's "
                 "--engine may be given")
      ->type_name("DIR");
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
  if (app.count("--iters") > 0) iters = parse_int_flag("--iters", f.iters, 1, kMaxIters, "1..1e12");
  std::optional<std::filesystem::path> data;
  if (app.count("--data") > 0) data = f.data;
  return resume_options(f.resume, iters, data);
}

TrainOptions check_train_flags(const CLI::App& app, const TrainFlags& f) {
  TrainOptions options;
  Recipe& recipe = options.recipe;
  recipe.iters = parse_int_flag("--iters", f.iters, 1, kMaxIters, "1..1e12");
  recipe.hidden = static_cast<int>(parse_int_flag("--hidden", f.hidden, 1, 100'000, "1..100000"));
  recipe.k = static_cast<int>(parse_int_flag("--k", f.k, 1, 100'000, "1..100000"));
  recipe.seed =
      static_cast<uint32_t>(parse_int_flag("--seed", f.seed, 0, 0xFFFFFFFFll, "0..4294967295"));
  options.log_every = parse_int_flag("--log-every", f.log_every, 1, kMaxIters, "1..1e12");
  options.eval_every = parse_int_flag("--eval-every", f.eval_every, 0, kMaxIters, "0..1e12");
  if (options.eval_every % options.log_every != 0) {
    throw InputError("--eval-every must be 0 or a multiple of --log-every " +
                     std::to_string(options.log_every) + " (got '" + f.eval_every + "')");
  }
  options.checkpoint_every =
      f.checkpoint_every.empty()
          ? options.log_every
          : parse_int_flag("--checkpoint-every", f.checkpoint_every, 1, kMaxIters, "1..1e12");
  recipe.lr = parse_float_flag("--lr", f.lr, "in (0, 1e6]",
                               [](float v) { return std::isfinite(v) && v > 0.0f && v <= 1e6f; });
  recipe.init_std = parse_float_flag("--init-std", f.init_std, "in [0, 1000]", [](float v) {
    return std::isfinite(v) && v >= 0.0f && v <= 1e3f;
  });
  recipe.visible_bias = f.visible_bias;
  if (f.hidden_type != "binary" && f.hidden_type != "ternary") {
    throw InputError("--hidden-type must be binary or ternary (got '" + f.hidden_type + "')");
  }
  recipe.hidden_type = parse_hidden_type(f.hidden_type);
  recipe.batch = static_cast<int>(parse_int_flag("--batch", f.batch, 1, 1'000'000, "1..1000000"));
  recipe.pcd = f.pcd;
  if (!f.chains.empty()) {
    recipe.chains = parse_int_flag("--chains", f.chains, 1, 100'000'000, "1..1e8");
    if (!f.pcd) throw InputError("--chains needs --pcd (CD's chains are the batch)");
  }
  if (!f.epochs.empty()) {
    recipe.epochs = parse_int_flag("--epochs", f.epochs, 1, 1'000'000, "1..1000000");
    if (app.count("--iters") > 0) {
      throw InputError(
          "--epochs cannot be combined with --iters: --epochs E trains E passes "
          "over the images, --iters N trains N updates; give one of them");
    }
  }
  recipe.momentum = parse_float_flag("--momentum", f.momentum, "in [0, 1)", [](float v) {
    return std::isfinite(v) && v >= 0.0f && v < 1.0f;
  });
  recipe.weight_decay = parse_float_flag("--weight-decay", f.weight_decay, "in [0, 1000]",
                                         [](float v) { return v >= 0.0f && v <= kMaxWeightDecay; });
  if (f.lr_decay != "none" && f.lr_decay != "linear") {
    throw InputError("--lr-decay must be none or linear (got '" + f.lr_decay + "')");
  }
  recipe.lr_decay = f.lr_decay == "linear" ? LrDecay::linear : LrDecay::none;
  options.data_dir = f.data;
  options.digit = parse_digit_flag("--digit", f.digit);
  options.split = parse_split_flag("--split", f.split);
  options.out_dir = f.out.empty() ? timestamp_dir() : f.out;
  options.out_dir_is_default = f.out.empty();
  return options;
}

// Training's --help: "Usage: rbm_cpu [train] [OPTIONS]".
class TrainUsageFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    std::string usage = CLI::Formatter::make_usage(app, std::move(name));
    const std::string program = app->get_name();
    const size_t at = usage.find(program + " ");
    return at == std::string::npos ? usage : usage.insert(at + program.size(), " [train]");
  }
};

// The command that args (after the program's name, and after `train` when it is named) start
// with: "eval", "sample" or "mosaic", which parse their own flags (host/commands.hpp); "" for
// training.
std::string command_of(const std::vector<std::string>& args) {
  for (const char* command : {"eval", "sample", "mosaic"}) {
    if (!args.empty() && args.front() == command) return command;
  }
  return "";
}

// What a command's exit code `code` says was done, for the message when its standard output could
// not be written: what is lost then, and that its files are not.
std::string lost_output_text(const std::string& command, bool version_or_help, int code) {
  if (code != 0 || version_or_help) return "";
  if (command == "eval") return ": the report is lost (eval writes no file)";
  if (command == "sample") {
    return ": the outputs were written; only the final lines (what was sampled and written, "
           "whether the chains mixed) could not be printed";
  }
  if (command == "mosaic") {
    return ": the mosaic was written; only the final line (what was drawn and written) could not "
           "be printed";
  }
  return ": the run was written; only its closing lines (what was trained and "
         "written) could not be printed";
}

int run_command_line(const std::string& program, int argc, char** argv, bool& version_or_help) {
  CLI::App app{program + ": train a Restricted Boltzmann Machine on binarized MNIST with " +
                   "single-sample CD-k (the reference recipe by default)",
               program};
  app.set_version_flag("--version", std::string(version()) + " (" + git_commit() + ")");
  TrainFlags flags;
  add_train_flags(app, flags, program);
  bool device_info = false;
  app.add_flag("--device-info", device_info,
               "print the device this build computes on and exit (exit code 2 if none is usable)");
  prepare_flags(app);
  // `train` is the default command and may be named.
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool train_named = !args.empty() && args.front() == "train";
  if (train_named) args.erase(args.begin());
  // The other commands parse their own flags (host/commands.hpp); train's are parsed here.
  const std::string command = train_named ? "" : command_of(args);
  const bool train = command.empty();
  const std::vector<std::string> command_args(args.begin() + (train ? 0 : 1), args.end());
  // Messages start with the command, as its parse errors do: "rbm_cpu eval: ...".
  const std::string who = program + (train ? "" : " " + command);
  // An exception no check expected: a bug, reported as one (exit 1, not the bad-input code 2).
  const auto internal_error = [&who](const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", who.c_str(), e.what());
    return 1;
  };
  // Training takes flags only: a leading word is a command, misspelt ("Eval", "help").
  if (train_named && !args.empty() && (args.front() == "train" || !command_of(args).empty())) {
    std::fprintf(stderr, "%s train: takes flags, not another command ('%s'): one command a run\n",
                 program.c_str(), args.front().c_str());
    return kExitBadInput;
  }
  if (!args.empty() && train && !args.front().starts_with('-')) {
    std::fprintf(stderr,
                 "%s: '%s' is not a command: the commands are train (the default), eval, sample "
                 "and mosaic (see --help)\n",
                 program.c_str(), args.front().c_str());
    return kExitBadInput;
  }
  app.footer("Other commands: " + program + " eval --help, " + program + " sample --help, " +
             program + " mosaic --help");
  // The usage line names the optional command word (CLI11's would be "rbm_cpu [OPTIONS]").
  app.formatter(std::make_shared<TrainUsageFormatter>());
  // Training's flags, looked at before CLI11 parses them (the other commands look at their own).
  if (train) {
    // --version, as --device-info, exits without doing anything else: another word is refused,
    // not ignored. (--help prints the help whatever else is given, as programs do.)
    const auto given = [&](const char* word) {
      return std::find(args.begin(), args.end(), word) != args.end();
    };
    const auto other = std::find_if(args.begin(), args.end(),
                                    [](const std::string& arg) { return arg != "--version"; });
    if (given("--version") && other != args.end() && !given("--help") && !given("-h")) {
      std::fprintf(stderr,
                   "%s: --version prints the version and exits: it takes no other flag (got "
                   "'%s')\n",
                   program.c_str(), other->c_str());
      return kExitBadInput;
    }
    if (const std::optional<std::string> empty = empty_inline_value(app, args)) {
      std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), empty->c_str());
      return kExitBadInput;
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
  try {
    if (train) app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      version_or_help = true;
      return app.exit(e);
    }
    std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), parse_error_text(e).c_str());
    return kExitBadInput;
  }
  try {
    if (command == "eval") return run_eval_command(program, command_args);
    if (command == "sample") return run_sample_command(program, command_args);
    if (command == "mosaic") return run_mosaic_command(program, command_args);
    reject_repeated_flags(app);
    if (device_info) {
      version_or_help = true;
      for (const CLI::Option* option : app.get_options()) {
        if (option->count() > 0 && option->get_name() != "--device-info") {
          throw InputError("--device-info prints the device and exits: it takes no other flag " +
                           std::string("(got ") + option->get_name() + ")");
        }
      }
      std::printf("%s\n", make_backend()->device_description().c_str());
      return 0;
    }
    TrainOptions options =
        app.count("--resume") == 0 ? check_train_flags(app, flags) : resume_train_flags(app, flags);
    options.program = program;
    // --engine picks the single-sample trainer (its name checked first: rbm_cpu refuses any);
    // the minibatch path has one engine.
    check_engine_name(flags.engine);
    if (!flags.engine.empty() && uses_minibatch(options.recipe)) {
      throw InputError("--engine " + flags.engine +
                       " picks the single-sample trainer (--batch 1 CD-k), and this run trains on "
                       "the minibatch path (" +
                       kMinibatchFlags + "), which has one engine: leave --engine out");
    }
    std::unique_ptr<Backend> backend = make_backend(flags.engine);
    run_training(*backend, options);
    return 0;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), e.what());
    return 128 + e.signal;  // the shell's code for a death by that signal: 130, 143
  } catch (const BackendUnavailable& e) {
    std::fprintf(stderr, "%s: %s; rbm_cpu is the CPU build of the same program\n", who.c_str(),
                 e.what());
    return kExitBadInput;
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), e.what());
    return kExitBadInput;
  } catch (const DivergenceError& e) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), e.what());
    return kExitDiverged;
  } catch (const std::bad_alloc&) {
    // An absurd size that no check caught (the CPU build sizes its buffers from the flags).
    std::fprintf(stderr,
                 "%s: out of memory: the request needs more memory than this machine gives "
                 "(fewer chains or AIS runs, a smaller --hidden or --batch)\n",
                 who.c_str());
    return kExitBadInput;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path that cannot be examined (a symlink loop, a name too long, no permission).
    std::fprintf(stderr, "%s: %s\n", who.c_str(), e.what());
    return kExitBadInput;
  } catch (const std::system_error& e) {
    // No thread to be had (pthread_create's EAGAIN): a limit on processes or on memory, e.g.
    // ulimit -v, under which each thread's stack and OpenBLAS's buffers must fit (exploratory
    // tester: "internal error: Resource temporarily unavailable", exit 1). Fewer threads do not
    // help under -v (the next tester: RBM_CPU_THREADS=1 was refused the same way, and with
    // OPENBLAS_NUM_THREADS=1 too OpenBLAS spun on its buffer): the advice is to raise the limit.
    if (e.code() != std::errc::resource_unavailable_try_again) return internal_error(e);
    std::fprintf(stderr,
                 "%s: cannot start a thread: %s (a limit on processes or memory, such as ulimit "
                 "-u or -v, leaves too little: raise it; a cgroup memory limit counts memory "
                 "used, not mapped)\n",
                 who.c_str(), e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    return internal_error(e);
  }
}

}  // namespace

int run_cli(int argc, char** argv) {
  // A pipe whose reader has gone (`eval | head -1`, a dead `2>&1 | tee log`) fails the write with
  // EPIPE instead of killing the process with SIGPIPE (exit 141, no message): standard output's
  // loss is then reported below (exit 2), and a training run whose stderr reader went keeps
  // training and checkpointing, and still stops on SIGINT, SIGTERM or SIGHUP as documented.
  std::signal(SIGPIPE, SIG_IGN);
  const std::string program = program_name();
  bool version_or_help = false;  // also --device-info: output that is all of the result
  const int code = run_command_line(program, argc, argv, version_or_help);
  // What went to standard output (eval's report and --json, --help) is part of the result: a
  // write that failed (a full disk, a closed pipe) must not end in exit code 0. The stream's
  // error flag says so whenever it happened; errno by now may not say why. The message names the
  // command and says what was done all the same (sample's and training's files).
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    const std::string command = command_of(args);
    const std::string who = program + (command.empty() ? "" : " " + command);
    const bool help = std::find(args.begin(), args.end(), "--help") != args.end() ||
                      std::find(args.begin(), args.end(), "-h") != args.end();
    std::fprintf(stderr, "%s: cannot write standard output%s\n", who.c_str(),
                 lost_output_text(command, version_or_help || help, code).c_str());
    return code != 0 ? code : kExitBadInput;
  }
  return code;
}

}  // namespace rbm
