// `sample --model DIR --out FILE.npy`: N independent Gibbs chains of K steps on the backend
// (Backend::gibbs, draws named as host/backend.hpp says), from Bernoulli(1/2) noise or from data
// images; writes the final states (N, d) as a float32 or packed-bit .npy (host/npy.hpp), optionally
// a PNG grid of up to 100 chains and the before/after picture (each start image beside its K-step
// sample), and prints whether the chains mixed (host/mixing.hpp).
#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/gibbs_blocks.hpp"
#include "host/mixing.hpp"
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
  bool json = false;
};

// "1 chain", "3 chains".
std::string count_text(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// "1.25 TB", "3.14 GB", "98 MB": three digits in the largest of TB, GB and MB not above `bytes`
// (MB below that).
std::string size_text(uint64_t bytes) {
  const double value = static_cast<double>(bytes);
  const auto [scale, unit] = value >= 1e12  ? std::pair{1e12, "TB"}
                             : value >= 1e9 ? std::pair{1e9, "GB"}
                                            : std::pair{1e6, "MB"};
  char text[32];
  std::snprintf(text, sizeof text, "%.3g %s", value / scale, unit);
  return text;
}

// The start states of chains [first, first + count) into `rows` ((count, d) row-major): chain c
// from image c mod n of `images`, or Bernoulli(1/2) noise (random_initial_states) without them.
void make_start_states(std::span<uint8_t> rows, int64_t first, int64_t count, int d, uint32_t seed,
                       const std::optional<Dataset>& images) {
  if (!images) {
    random_initial_states(rows, first, count, d, seed);
    return;
  }
  for (int64_t c = 0; c < count; ++c) {
    std::copy_n(images->row((first + c) % images->rows), d, rows.begin() + c * d);
  }
}

// An output staged (host/atomic_file.hpp: written beside its name, not yet in place) and the
// flag that asked for it.
struct StagedOutput {
  std::string flag;
  StagedFile file;
};

// Runs a step of writing an output (staging it, writing a piece); a failure names its flag and says
// that nothing was written: the outputs staged before it are removed as they go.
template <typename Step>
auto naming_the_flag(const std::string& flag, const Step& step) -> decltype(step()) {
  try {
    return step();
  } catch (const InputError& e) {
    throw InputError(flag + " " + e.what() + "; nothing written");
  }
}

// Puts the staged outputs in place, one after another. A failure there (a rename, which the
// staging has made all but certain to succeed unless something took an output's name meanwhile,
// or the directory's sync after it) names the outputs in place when it came: the others were not
// written.
void commit_outputs(std::vector<StagedOutput>& staged) {
  for (size_t k = 0; k < staged.size(); ++k) {
    try {
      staged[k].file.commit();
    } catch (const InputError& e) {
      std::vector<std::string> written;
      for (size_t i = 0; i <= k; ++i) {
        if (staged[i].file.in_place()) {
          written.push_back(staged[i].flag + " " + staged[i].file.path().string());
        }
      }
      std::string list;
      for (size_t i = 0; i < written.size(); ++i) {
        list += (i == 0 ? "" : i + 1 == written.size() ? " and " : ", ") + written[i];
      }
      throw InputError(
          staged[k].flag + " " + e.what() +
          (written.empty()
               ? "; nothing written"
               : "; only " + list + (written.size() == 1 ? " was" : " were") + " written"));
    }
  }
}

// What the mixing check (host/mixing.hpp) found: `verdict` is "mixed" (no sign that the chains
// have not), "not mixed", "stuck" (R-hat inf), "undefined" (one free energy), "not judged" (too
// few chains or steps), or "none" without steps; `line` the text line (empty for "none"), a
// `note:` (and `note` true) when the chains have not mixed.
struct MixingReport {
  std::string verdict, line;
  std::optional<double> r_hat, threshold;
  bool note = false;
};

MixingReport mixing_report(const MixingTrace& mixing, int64_t steps) {
  if (steps == 0) return {"none", "", {}, {}};
  char text[800];
  if (!mixing.judged()) {
    std::snprintf(text, sizeof text,
                  "mixing: not judged (the free energy's split R-hat needs %lld chains and %lld "
                  "steps)",
                  static_cast<long long>(kMixingMinChains),
                  static_cast<long long>(kMixingMinSteps));
    return {"not judged", text, {}, {}};
  }
  const std::vector<int64_t>& at = mixing.read_steps();
  char what[200];
  std::snprintf(what, sizeof what,
                "the free energy's split R-hat over %zu reads of steps %lld..%lld of chains "
                "0..%lld",
                at.size(), static_cast<long long>(at.front()), static_cast<long long>(at.back()),
                static_cast<long long>(mixing.traced_chains() - 1));
  const double r_hat = mixing.r_hat(), threshold = mixing.threshold();
  // The two numbers with as many decimals as it takes to tell them apart (4 at least).
  int decimals = 4;
  const auto fixed = [&](double v) {
    char number[40];
    std::snprintf(number, sizeof number, "%.*f", decimals, v);
    return std::string(number);
  };
  while (decimals < 12 && std::isfinite(r_hat) && r_hat != threshold &&
         fixed(r_hat) == fixed(threshold)) {
    ++decimals;
  }
  if (std::isnan(r_hat)) {
    std::snprintf(text, sizeof text,
                  "mixing: not judged: %s is undefined, every read giving the same free energy "
                  "(to 9 digits)",
                  what);
    return {"undefined", text, {}, threshold};
  }
  if (r_hat <= threshold) {
    std::snprintf(text, sizeof text,
                  "mixing: %s is %s, not above the %s that independent normal draws exceed once in "
                  "1000 runs: no sign that the chains have not mixed (necessary, not sufficient: "
                  "chains that all sit in one mode agree too)",
                  what, fixed(r_hat).c_str(), fixed(threshold).c_str());
    return {"mixed", text, r_hat, threshold};
  }
  if (std::isinf(r_hat)) {
    std::snprintf(
        text, sizeof text,
        "note: the chains have not mixed: %s is inf: each chain kept one free energy over "
        "the reads of each half while the chains differ, so they are stuck where they "
        "are (a model whose units are all but certain given the others), and more steps "
        "may not move them",
        what);
    return {"stuck", text, {}, threshold, true};  // JSON holds no inf: null, with the verdict
  }
  std::snprintf(text, sizeof text,
                "note: the chains have not mixed: %s is %s, above the %s that independent normal "
                "draws exceed once in 1000 runs: the chains differ from each other more than each "
                "changes over the reads, which are not yet like independent draws from the model, "
                "and the final states may not be draws from it either; run more steps",
                what, fixed(r_hat).c_str(), fixed(threshold).c_str());
  return {"not mixed", text, r_hat, threshold, true};
}

}  // namespace

int run_sample_command(const std::string& program, const std::vector<std::string>& args) {
  CLI::App app{
      "run Gibbs chains of a trained model, write their final states and say whether "
      "they mixed (the split R-hat of the free energy of up to 256 of them)",
      program + " sample"};
  SampleFlags f;
  app.add_option("--model,model", f.model,
                 "run directory holding W.npy, b.npy [, a.npy, run.json (its recipe.hidden_type: "
                 "binary or ternary hidden units, binary when absent)]")
      ->required()
      ->type_name("DIR");
  app.add_option("--chains", f.chains, "independent chains N, 1..1e7")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--steps", f.steps, "Gibbs steps x -> h -> x' per chain K, 0..1e9")
      ->capture_default_str()
      ->type_name("K");
  app.add_option("--init", f.init, "first states: random (Bernoulli(1/2)) or data (images)")
      ->capture_default_str()
      ->type_name("INIT");
  app.add_option("--seed", f.seed,
                 "random seed, 0..4294967295; chain c's draws depend on the seed and c alone, so "
                 "the same chain from other starts (--init) shares its draws and may end the same")
      ->capture_default_str()
      ->type_name("S");
  app.add_option("--out", f.out, "the final states, .npy (see --format)")
      ->required()
      ->type_name("FILE");
  app.add_option("--format", f.format,
                 "--out's layout: float ((N, d) float32 0/1) or packed ((N, ceil(d/8)) uint8, "
                 "numpy.packbits(states, axis=1); 32 times smaller)")
      ->capture_default_str()
      ->type_name("FORMAT");
  app.add_option("--png", f.png, "a PNG grid of the first min(N, 100) final states (d = 784)")
      ->type_name("FILE");
  app.add_option("--before-after", f.before_after,
                 "a PNG of the first min(N, 50) start images, each beside its final state "
                 "(d = 784)")
      ->type_name("FILE");
  app.add_option("--data", f.data,
                 "directory of the MNIST IDX files (with --init data; default: the one the "
                 "model's run.json records, when it exists, else data/mnist)")
      ->type_name("DIR");
  app.add_option("--digit", f.digit,
                 "digit of the start images (with --init data): 0..9 or all (default: the "
                 "model's run.json's, else 3)")
      ->type_name("DIGIT");
  app.add_option("--split", f.split,
                 "MNIST split of the start images (with --init data): test, train or all")
      ->capture_default_str()
      ->type_name("SPLIT");
  app.add_flag("--json", f.json,
               "print one JSON object instead of text: what was sampled and written, the mixing "
               "check's verdict, R-hat and threshold, and the notes");
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
  // Started from images and given no steps, the chains draw nothing: the seed could not matter.
  if (from_data && steps == 0 && app.count("--seed") > 0) {
    throw InputError(
        "--seed would be ignored: with --init data and --steps 0 nothing is drawn (the final "
        "states are the start images)");
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
  check_output_extension("--out", f.out, ".npy");
  if (app.count("--png") > 0) check_output_extension("--png", f.png, ".png");
  if (app.count("--before-after") > 0) {
    check_output_extension("--before-after", f.before_after, ".png");
  }
  const Params params = read_model(f.model);  // finite, as read_model checks
  // Finite weights whose sums overflow in float would give infinite or NaN pre-activations (+inf
  // meeting -inf), the draws of another model (a NaN probability draws 0), without a word;
  // rounding can add a part in 1e4 to the bound.
  if (const double reach = largest_preactivation(params); reach > FLT_MAX / 2) {
    char text[200];
    std::snprintf(text, sizeof text,
                  ": a unit's pre-activation can reach %.3g (|bias| and the sum of |W| over its "
                  "connections), and its float sums overflow beyond %.3g",
                  reach, double{FLT_MAX} / 2);
    throw InputError("--model " + f.model + text + ": the chains would not sample this model");
  }
  const int d = params.visible;
  for (const auto& [flag, path] : {std::pair{"--png", f.png}, {"--before-after", f.before_after}}) {
    if (!path.empty() && d != kImagePixels) {
      throw InputError(std::string(flag) + " draws 28x28 images: the model in " + f.model +
                       " has " + std::to_string(d) + " visible units, not 784");
    }
  }
  // A full disk found after hours of sampling would waste them: --out's space comes first (the
  // PNGs are kilobytes).
  const uint64_t out_bytes = NpyStatesFile::file_bytes(chains, d, format);
  if (const std::optional<uint64_t> free = free_bytes_for(f.out); free && *free < out_bytes) {
    throw InputError(
        "--out " + f.out + ": the states take " + size_text(out_bytes) +
        ", and its file system has " + size_text(*free) + " free" +
        (format == StatesFormat::float32 ? " (--format packed takes 32 times less)" : "") +
        "; nothing written");
  }
  // SIGINT, SIGTERM and SIGHUP stop the command from here on with one line, saying that nothing was
  // written: reading the start images and making a million chains' start states take seconds, the
  // sampling longer. The sampling (below) looks before each block's start states and after each
  // piece of steps. A signal that is not looked at within StopSignals::kAcknowledgeAfter is
  // acknowledged. The handlers stay until the outputs are written: a signal in the last piece
  // still stops the sampling, and one during the last writes stops the command when they end,
  // before any output is put in place (a second one kills the program, and the temporary files go
  // with it).
  StopSignals signals(program + " sample",
                      "the sampling stops when the work in progress ends, writing nothing");
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
  std::unique_ptr<Backend> backend = make_backend();
  backend->set_params(params);

  // The chains in blocks (host/gibbs_blocks.hpp: the same states as one call over all chains),
  // each block's steps in pieces of about 0.05 s, with a look at the stop signals and a progress
  // redraw after each piece: a long sampling shows how far it is, and stops on Ctrl-C (waiting for
  // one piece, or for one block's step when that takes longer), saying that it wrote nothing.
  // Without a terminal a progress line comes at most every 10 s. A block's states stay on the
  // device for the piece: one transfer per piece, not step. Each block's start states are made
  // when it comes, and its final states go to --out's temporary file when it ends: one block's
  // states are in memory at a time, not all chains'.
  const int64_t total = chains * steps;  // chain-steps, at most 1e7 x 1e9
  Progress progress("sample", total, 0, "chain-steps");
  // Throws Interrupted when a stop signal came, saying how far the work came: with
  // chains_done < N, in the sampling (or the making of the start states, without steps); after it,
  // with all chains done.
  const auto stop_if_signalled = [&](int64_t chains_done, int64_t chain_steps_done) {
    if (const int stop = signals.received(); stop != 0) {
      if (steps > 0) progress.finish();
      const std::string how_far =
          chains_done == chains ? "after the sampling"
          : steps > 0
              ? "with " + done_text(chain_steps_done, total, "the sampling", "chain-steps") +
                    " done"
              : "with " + done_text(chains_done, chains, "the start states made", "chains");
      throw Interrupted(
          stop, "interrupted by " + signal_name(stop) + " " + how_far + "; nothing written");
    }
  };
  auto last_line = std::chrono::steady_clock::now();
  // Whether the chains mixed: the free energies of the first chains at steps of the second half.
  MixingTrace mixing(chains, steps);
  GibbsBlockRun run(
      *backend, chains, d, seed, steps,
      GibbsBlocks{.block_chains = sample_block_chains(d, params.hidden)},
      [&](int64_t done) {
        stop_if_signalled(done / steps, done);
        const auto now = std::chrono::steady_clock::now();
        if (progress.interactive() || now - last_line >= std::chrono::seconds(10)) {
          progress.update(done, "");
          last_line = now;
        }
      },
      ChainReads{
          .chains = mixing.traced_chains(),
          .steps = mixing.read_steps(),
          .at_step = [&](int64_t step, int64_t first_chain, std::span<const uint8_t> states) {
            mixing.record(params, step, first_chain, states);
          }});
  // The pictures' chains, copied from the first block: the start and final states of the first
  // min(N, 50) chains (--before-after) and the final states of the first min(N, 100) (--png).
  const int n = static_cast<int>(std::min<int64_t>(chains, 100));
  const int pairs = std::min(n, 50);
  std::vector<uint8_t> before, first_final;
  std::vector<uint8_t> block;  // (chains in the block, d), row-major
  NpyStatesFile out =
      naming_the_flag("--out", [&] { return NpyStatesFile(f.out, chains, d, format); });
  while (!run.finished()) {
    const int64_t first = run.next_first(), count = run.next_count();
    stop_if_signalled(first, first * steps);
    block.resize(static_cast<size_t>(count) * d);
    make_start_states(block, first, count, d, seed, images);
    if (first == 0) before.assign(block.begin(), block.begin() + static_cast<ptrdiff_t>(pairs) * d);
    run.run_next(block);
    if (first == 0) {
      first_final.assign(block.begin(), block.begin() + static_cast<ptrdiff_t>(n) * d);
    }
    naming_the_flag("--out", [&] { out.append_rows(block); });
  }
  if (steps > 0) progress.finish();
  // A signal after the last look (the last progress redraw), or with no steps to look between.
  stop_if_signalled(chains, total);
  // No acknowledgement from here: the writes run to their end (a signal during an fsync waits for
  // it in the kernel, however many come), and a signal during them is looked at below, before any
  // output is put in place.
  signals.stop_acknowledging();

  // All or none: --out is staged (written above, synced here), then the pictures, and only when
  // all are are they put in place, so that a failure (a full disk) leaves every file as it was.
  std::vector<StagedOutput> staged;
  staged.push_back({"--out", naming_the_flag("--out", [&] { return out.finish(); })});
  if (!f.png.empty()) {
    staged.push_back({"--png", naming_the_flag("--png", [&] {
                        return stage_png_gray(f.png, image_grid(first_final, n));
                      })});
  }
  if (!f.before_after.empty()) {
    const std::vector<uint8_t> after(first_final.begin(),
                                     first_final.begin() + static_cast<ptrdiff_t>(pairs) * d);
    staged.push_back({"--before-after", naming_the_flag("--before-after", [&] {
                        return stage_png_gray(f.before_after,
                                              before_after_grid(before, after, pairs));
                      })});
  }
  // A signal during the writes (an exploratory tester's Ctrl-Cs during the final fsync of a 1 GB
  // --out had been absorbed, exit 0) stops here, where nothing is in place yet: the staged files go
  // with their destructors, as for a signal during the sampling.
  if (const int stop = signals.received(); stop != 0) {
    throw Interrupted(stop, "interrupted by " + signal_name(stop) +
                                " during the final writes, before any output was put in place; "
                                "nothing written");
  }
  commit_outputs(staged);
  // What was sampled: the hidden units (run.json's, or binary without one) and the start images.
  std::string starts = "random starts";
  if (from_data) {
    starts = "data starts (chain c at image c mod " + std::to_string(images->rows) + " of the " +
             (split == Split::all ? std::string() : std::string(split_name(split)) + " ") +
             "images of " +
             (start_images.digit.digit ? "digit " + start_images.digit.text : "all digits") +
             (split == Split::all ? ", both splits)" : ")");
  }
  const MixingReport mixed = mixing_report(mixing, steps);
  // Noise from random starts is what such a model samples, not a failure: h = 0 alone gives every
  // image weight exp(a'x) = 1, so log Z >= 784 log 2 (the reference recipe's model has nearly all
  // of its mass there; README, "What it learns").
  std::vector<std::string> notes;  // without their "note: ", which the text lines have
  if (mixed.note) notes.push_back(mixed.line.substr(std::string_view("note: ").size()));
  if (!from_data && !params.has_visible_bias() && params.hidden_type == HiddenType::binary &&
      steps > 0) {
    notes.push_back(
        "the model has no visible biases (a = 0): h = 0 gives every image weight 1, so much of "
        "its probability can sit on noise, and chains from random starts often stay noise (all "
        "in that one mode, which the mixing check cannot tell from mixing); --init data starts "
        "them at the images, and training with --visible-bias removes that floor");
  }
  if (f.json) {
    const auto path_or_null = [](const std::string& path) {
      return path.empty() ? nlohmann::json(nullptr) : nlohmann::json(path);
    };
    const auto number_or_null = [](const std::optional<double>& v) {
      return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    };
    nlohmann::json start = nullptr;
    if (from_data) {
      start = {{"digit", start_images.digit.digit ? nlohmann::json(*start_images.digit.digit)
                                                  : nlohmann::json("all")},
               {"split", split_name(split)},
               {"n_images", images->rows}};
    }
    const std::vector<int64_t>& at = mixing.read_steps();
    nlohmann::json report = {
        {"chains", chains},
        {"steps", steps},
        {"seed", from_data && steps == 0 ? nlohmann::json(nullptr) : nlohmann::json(seed)},
        {"init", f.init},
        {"start_images", start},
        {"hidden_type", hidden_type_name(params.hidden_type)},
        {"hidden", params.hidden},
        {"visible", d},
        {"backend", backend->name()},
        {"out", f.out},
        {"format", f.format},
        {"png", path_or_null(f.png)},
        {"before_after", path_or_null(f.before_after)},
        {"mixing",
         {{"verdict", mixed.verdict},
          {"r_hat", number_or_null(mixed.r_hat)},
          {"threshold", number_or_null(mixed.threshold)},
          {"traced_chains", mixing.traced_chains()},
          {"read_steps",
           at.empty() ? nlohmann::json(nullptr) : nlohmann::json::array({at.front(), at.back()})},
          {"reads", at.size()},
          {"text", mixed.line.empty() ? nlohmann::json(nullptr) : nlohmann::json(mixed.line)}}},
        {"notes", notes}};
    // Paths that are not valid UTF-8 cannot be JSON text: their invalid bytes print as U+FFFD.
    std::printf("%s\n",
                report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("sampled %s x %s of a %s model (H %d) from %s with %s; wrote %s%s%s%s%s\n",
              count_text(chains, "chain").c_str(), count_text(steps, "step").c_str(),
              hidden_type_name(params.hidden_type), params.hidden, starts.c_str(),
              backend->name().c_str(), f.out.c_str(), f.png.empty() ? "" : " ", f.png.c_str(),
              f.before_after.empty() ? "" : " ", f.before_after.c_str());
  // The mixing line (a note or not), then the other notes.
  if (!mixed.line.empty()) std::printf("%s\n", mixed.line.c_str());
  for (size_t k = mixed.note ? 1 : 0; k < notes.size(); ++k) {
    std::printf("note: %s\n", notes[k].c_str());
  }
  return 0;
}

}  // namespace rbm
