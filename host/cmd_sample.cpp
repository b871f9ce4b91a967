// `sample --model DIR --out FILE.npy`: N independent Gibbs chains of K steps on the backend
// (Backend::gibbs, draws named as host/backend.hpp says), from Bernoulli(1/2) noise or from data
// images; writes the final states (N, d) as a float32 or packed-bit .npy (host/npy.hpp), optionally
// a PNG grid of up to 100 chains and the before/after picture (each start image beside its K-step
// sample).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "host/backend.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/gibbs_blocks.hpp"
#include "host/model_io.hpp"
#include "host/npy.hpp"
#include "host/png_image.hpp"
#include "host/progress.hpp"
#include "host/signals.hpp"

namespace rbm {
namespace {

// Numbers stay text until parse_int_flag checks them (host/command_flags.hpp); an empty digit is
// one not given.
struct SampleFlags {
  std::string model, out, format = "float", png, before_after, init = "random", data, digit,
                          split = "test";
  std::string chains = "100", steps = "1000", seed = "1";
};

constexpr int kImagePixels = 28 * 28;  // --png and --before-after draw MNIST-sized tiles

// "1 chain", "3 chains".
std::string count_text(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// The start states are made a block of this many units at a time (16 MiB, about 0.05 s on two
// cores), with a look at SIGINT and SIGTERM between blocks: a million chains take seconds.
constexpr int64_t kStartBlockUnits = int64_t{1} << 24;

// The start states (chains, d): chain c from image c mod n of `images`, or Bernoulli(1/2) noise
// (random_initial_states) without them. Made in blocks of chains, each chain's state the same as
// in one pass; a signal between blocks throws Interrupted.
std::vector<uint8_t> start_states(int64_t chains, int d, uint32_t seed,
                                  const std::optional<Dataset>& images,
                                  const StopSignals& signals) {
  // Reserved, then grown a block at a time: zeroing (touching) all of it at once would take
  // seconds of its own before the first look.
  std::vector<uint8_t> states;
  states.reserve(static_cast<size_t>(chains) * static_cast<size_t>(d));
  const int64_t block = std::max<int64_t>(1, kStartBlockUnits / d);
  for (int64_t first = 0; first < chains; first += block) {
    if (const int stop = signals.received(); stop != 0) {
      throw Interrupted(stop, "interrupted by " + signal_name(stop) + " with " +
                                  done_text(first, chains, "the start states made", "chains") +
                                  "; nothing written");
    }
    const int64_t count = std::min(block, chains - first);
    states.resize(static_cast<size_t>(first + count) * d);
    const std::span<uint8_t> rows(states.data() + static_cast<size_t>(first) * d,
                                  static_cast<size_t>(count) * d);
    if (!images) {
      random_initial_states(rows, first, count, d, seed);
      continue;
    }
    for (int64_t c = 0; c < count; ++c) {
      std::copy_n(images->row((first + c) % images->rows), d, rows.begin() + c * d);
    }
  }
  return states;
}

// An output staged (host/atomic_file.hpp: written beside its name, not yet in place) and the
// flag that asked for it.
struct StagedOutput {
  std::string flag, path;
  StagedFile file;
};

// Stages one output; a failure names its flag and says that nothing was written: the outputs
// staged before it are removed as `staged` goes.
void stage_output(const std::string& flag, const std::string& path,
                  std::vector<StagedOutput>& staged, const std::function<StagedFile()>& stage) {
  try {
    staged.push_back({flag, path, stage()});
  } catch (const InputError& e) {
    throw InputError(flag + " " + e.what() + "; nothing written");
  }
}

// Puts the staged outputs in place, one after another. A failure there (a rename, which the
// staging has made all but certain to succeed, or the directory's sync after it) names the outputs
// in place when it came.
void commit_outputs(std::vector<StagedOutput>& staged) {
  for (size_t k = 0; k < staged.size(); ++k) {
    try {
      staged[k].file.commit();
    } catch (const InputError& e) {
      std::vector<std::string> written;
      for (size_t i = 0; i <= k; ++i) {
        if (!staged[i].file.pending()) written.push_back(staged[i].flag + " " + staged[i].path);
      }
      std::string list;
      for (size_t i = 0; i < written.size(); ++i) {
        list += (i == 0 ? "" : i + 1 == written.size() ? " and " : ", ") + written[i];
      }
      throw InputError(staged[k].flag + " " + e.what() +
                       (written.empty()
                            ? "; nothing written"
                            : "; " + list + (written.size() == 1 ? " was" : " were") + " written"));
    }
  }
}

}  // namespace

int run_sample_command(const std::string& program, const std::vector<std::string>& args) {
  CLI::App app{"run Gibbs chains of a trained model and write their final states",
               program + " sample"};
  SampleFlags f;
  app.add_option("--model,model", f.model,
                 "run directory holding W.npy, b.npy [, a.npy, run.json (its recipe.hidden_type: "
                 "binary or ternary hidden units, binary when absent)]")
      ->required();
  app.add_option("--chains", f.chains, "independent chains N, 1..1e7, with N d <= 4e9")
      ->capture_default_str();
  app.add_option("--steps", f.steps, "Gibbs steps x -> h -> x' per chain K, 0..1e9")
      ->capture_default_str();
  app.add_option("--init", f.init, "first states: random (Bernoulli(1/2)) or data (images)")
      ->capture_default_str();
  app.add_option("--seed", f.seed,
                 "random seed, 0..4294967295; chain c's draws depend on the seed and c alone, so "
                 "the same chain from other starts (--init) shares its draws and may end the same")
      ->capture_default_str();
  app.add_option("--out", f.out, "the final states, .npy (see --format)")->required();
  app.add_option("--format", f.format,
                 "--out's layout: float ((N, d) float32 0/1) or packed ((N, ceil(d/8)) uint8, "
                 "numpy.packbits(states, axis=1); 32 times smaller)")
      ->capture_default_str();
  app.add_option("--png", f.png, "a PNG grid of the first min(N, 100) final states (d = 784)");
  app.add_option("--before-after", f.before_after,
                 "a PNG of the first min(N, 50) start images, each beside its final state "
                 "(d = 784)");
  app.add_option("--data", f.data,
                 "directory of the MNIST IDX files (with --init data; default: the one the "
                 "model's run.json records, when it exists, else data/mnist)");
  app.add_option("--digit", f.digit,
                 "digit of the start images (with --init data): 0..9 or all (default: the "
                 "model's run.json's, else 3)");
  app.add_option("--split", f.split,
                 "MNIST split of the start images (with --init data): test, train or all")
      ->capture_default_str();
  if (const auto exit_code = parse_command_flags(app, args)) return *exit_code;

  const int64_t chains = parse_int_flag("--chains", f.chains, 1, 10'000'000, "1..1e7");
  const int64_t steps = parse_int_flag("--steps", f.steps, 0, 1'000'000'000, "0..1e9");
  const uint32_t seed =
      static_cast<uint32_t>(parse_int_flag("--seed", f.seed, 0, 0xFFFFFFFFll, "0..4294967295"));
  if (f.format != "float" && f.format != "packed") {
    throw InputError("--format must be float or packed (got '" + f.format + "')");
  }
  const StatesFormat format = f.format == "float" ? StatesFormat::float32 : StatesFormat::packed;
  if (f.init != "random" && f.init != "data") {
    throw InputError("--init must be random or data (got '" + f.init + "')");
  }
  const bool from_data = f.init == "data";
  for (const char* flag : {"--data", "--digit", "--split"}) {
    if (!from_data && app.count(flag) > 0) {
      throw InputError(std::string(flag) + " selects the start images: it needs --init data");
    }
  }
  const Split split = parse_split_flag("--split", f.split);
  // The start images: --digit and --data, else what the model's run recorded (as eval does).
  const ImageChoice start_images =
      from_data
          ? images_flagged_or_recorded(
                f.digit, app.count("--data") > 0 ? std::optional(f.data) : std::nullopt, f.model)
          : ImageChoice{};
  // Every output path before any work: none of them may be found wanting after the sampling.
  check_output_file("--out", f.out);
  if (app.count("--png") > 0) check_output_file("--png", f.png);
  if (app.count("--before-after") > 0) check_output_file("--before-after", f.before_after);
  reject_same_files({{"--out", f.out}, {"--png", f.png}, {"--before-after", f.before_after}});

  const Params params = read_model(f.model);  // finite, as read_model checks
  const int d = params.visible;
  for (const auto& [flag, path] : {std::pair{"--png", f.png}, {"--before-after", f.before_after}}) {
    if (!path.empty() && d != kImagePixels) {
      throw InputError(std::string(flag) + " draws 28x28 images: the model in " + f.model +
                       " has " + std::to_string(d) + " visible units, not 784");
    }
  }
  if (static_cast<double>(chains) * d > 4e9) {
    throw InputError("--chains " + f.chains + " x " + std::to_string(d) +
                     " units is more than 4e9 states: at most " +
                     std::to_string(static_cast<int64_t>(4e9 / d)) + " chains of this model");
  }
  // SIGINT and SIGTERM stop the command from here on with one line, saying that nothing was
  // written: reading the start images and making a million chains' start states take seconds, the
  // sampling longer. The start states look between blocks of chains; the sampling (below) after
  // each piece of steps. A signal that is not looked at within StopSignals::kAcknowledgeAfter is
  // acknowledged. The handlers stay until the outputs are written: a signal in the last piece
  // still stops the sampling, and one during the writes lets them finish (a second one kills the
  // program).
  StopSignals signals(program + " sample",
                      "the sampling stops when the work in progress ends, writing nothing; "
                      "the same signal again kills it at once");
  std::optional<Dataset> images;
  if (from_data) {
    images = load_mnist(start_images.data_dir, start_images.digit.digit, split);
    if (images->rows == 0) {
      throw InputError("no images match --digit " + start_images.digit.text + " and --split " +
                       f.split);
    }
    if (images->cols() != d) {
      throw InputError("--model " + f.model + " has " + std::to_string(d) +
                       " visible units, the images " + std::to_string(images->cols()) + " pixels");
    }
  }
  std::vector<uint8_t> states = start_states(chains, d, seed, images, signals);
  images.reset();
  // The before-after picture's start images: its first up to 50 chains, not a copy of all of them
  // (the states may be gigabytes).
  const int n = static_cast<int>(std::min<int64_t>(chains, 100));
  const size_t before_after_count = static_cast<size_t>(std::min(n, 50)) * d;
  const std::vector<uint8_t> before =
      f.before_after.empty()
          ? std::vector<uint8_t>()
          : std::vector<uint8_t>(states.begin(), states.begin() + before_after_count);

  std::unique_ptr<Backend> backend = make_backend();
  backend->set_params(params);
  // The chains in blocks (host/gibbs_blocks.hpp: the same states as one call), each block's steps
  // in pieces of about 0.05 s, with a look at SIGINT and SIGTERM and a progress redraw after each
  // piece: a long sampling shows how far it is, and stops on Ctrl-C (waiting for one piece, or for
  // one block's step when that takes longer), saying that it wrote nothing. Without a terminal a
  // progress line comes at most every 10 s. A block's states stay on the device for the piece: one
  // transfer per piece, not step.
  {
    const int64_t total = chains * steps;  // chain-steps, at most 1e7 x 1e9
    Progress progress("sample", total, 0, "chain-steps");
    auto last_line = std::chrono::steady_clock::now();
    gibbs_in_blocks(
        *backend, states, chains, d, seed, steps,
        GibbsBlocks{.block_chains = sample_block_chains(d, params.hidden)}, [&](int64_t done) {
          if (const int stop = signals.received(); stop != 0) {
            progress.finish();
            throw Interrupted(stop, "interrupted by " + signal_name(stop) + " with " +
                                        done_text(done, total, "the sampling", "chain-steps") +
                                        " done; nothing written");
          }
          const auto now = std::chrono::steady_clock::now();
          if (progress.interactive() || now - last_line >= std::chrono::seconds(10)) {
            progress.update(done, "");
            last_line = now;
          }
        });
    if (steps > 0) progress.finish();
  }
  // A signal after the last look (the last progress redraw), or with no steps to look between.
  if (const int stop = signals.received(); stop != 0) {
    throw Interrupted(stop, "interrupted by " + signal_name(stop) + "; nothing written");
  }
  signals.stop_acknowledging();  // the writes finish whatever comes

  // All or none: each output is staged first, and only when all are are they put in place, so
  // that a failure (a full disk) leaves every file as it was.
  std::vector<StagedOutput> staged;
  stage_output("--out", f.out, staged,
               [&] { return stage_npy_states(f.out, states, chains, d, format); });
  if (!f.png.empty()) {
    const std::vector<uint8_t> first(states.begin(), states.begin() + static_cast<size_t>(n) * d);
    stage_output("--png", f.png, staged,
                 [&] { return stage_png_gray(f.png, image_grid(first, n)); });
  }
  if (!f.before_after.empty()) {
    const std::vector<uint8_t> after(states.begin(), states.begin() + before_after_count);
    stage_output("--before-after", f.before_after, staged, [&] {
      return stage_png_gray(f.before_after, before_after_grid(before, after, std::min(n, 50)));
    });
  }
  commit_outputs(staged);
  std::printf("sampled %s x %s from %s starts with %s; wrote %s%s%s%s%s\n",
              count_text(chains, "chain").c_str(), count_text(steps, "step").c_str(),
              f.init.c_str(), backend->name().c_str(), f.out.c_str(), f.png.empty() ? "" : " ",
              f.png.c_str(), f.before_after.empty() ? "" : " ", f.before_after.c_str());
  return 0;
}

}  // namespace rbm
