// `eval --model DIR`: how good a trained model is. log Z (exact for small H, else AIS on the
// backend; host/log_z.hpp), the average log p(x) of the selected images with the interval carried
// over from log Z, the exact pseudo-log-likelihood, the mean-field reconstruction error, the
// free-energy gap to the model's training images (those run.json records) and how many of the
// scored images were among them. Text, or one JSON object with --json.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "host/ais.hpp"
#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/command_flags.hpp"
#include "host/commands.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/log_z.hpp"
#include "host/metrics.hpp"
#include "host/model.hpp"
#include "host/model_io.hpp"
#include "host/progress.hpp"
#include "host/sha256.hpp"
#include "host/signals.hpp"
#include "host/stop.hpp"

namespace rbm {
namespace {

// run() with `progress` drawn from the count `done` by a thread of its own: on a terminal a bar
// redrawn five times a second; else a line every 10 s, so that a log of a long log Z shows it
// moving and a short one (a few seconds) stays quiet. The report comes in one piece on stdout.
template <typename Run>
LogZEstimate with_progress(Progress& progress, const std::atomic<int64_t>& done, const Run& run) {
  // On a terminal the last draw, at 100% when the work ran to its end, then the line ended; also
  // when run() throws: its message gets a line of its own.
  struct EndBarLine {
    Progress& progress;
    const std::atomic<int64_t>& done;
    ~EndBarLine() {
      if (const int64_t count = done.load(); count > 0 && progress.interactive()) {
        progress.update(count, "");
      }
      progress.finish();
    }
  } end_bar_line{progress, done};
  const std::chrono::milliseconds period(progress.interactive() ? 200 : 10000);
  const std::jthread drawer([&](std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any wake;
    std::unique_lock lock(mutex);
    // Returns at the timeout or at once on request_stop (the predicate is never true).
    while (!wake.wait_for(lock, stop, period, [] { return false; }) && !stop.stop_requested()) {
      if (const int64_t count = done.load(); count > 0) progress.update(count, "");
    }
  });
  return run();
}

// estimate_log_z with its work counted and shown (a bar on a terminal, else a line every 10 s): AIS
// steps (about 6 s at the defaults at H 100 on 2 cores, 2 bases x 100 runs x 14500 temperatures,
// and minutes with more) or the hidden states of an exact log Z (1.2 s at H 24, a minute or more at
// H 30). SIGINT, SIGTERM and SIGHUP stop it at its next look (host/log_z.hpp) with one line that
// says how far it came; the handlers are there for log Z only (what follows takes seconds at most,
// and a signal then ends eval by its default action).
LogZEstimate estimate_log_z_showing_progress(const std::string& program, Backend& backend,
                                             const Params& params, LogZOptions options) {
  const bool exact = log_z_is_exact(params, options);
  const int64_t total =
      exact ? exact_hidden_states(params) : 2 * options.ais_runs * options.ais_betas;
  const char* what = exact ? "log Z exact" : "log Z by AIS";
  const char* unit = exact ? "states" : "steps";
  std::atomic<int64_t> done{0};
  (exact ? options.exact_states_done : options.ais_steps_done) = &done;
  const StopSignals signals(program + " eval",
                            "log Z stops when the work in progress ends, with no report");
  options.stop = [&signals] { return signals.received() != 0; };
  const auto interrupted = [&](int signal_number) {
    return Interrupted(signal_number, "interrupted by " + signal_name(signal_number) + " with " +
                                          done_text(done.load(), total, what, unit) +
                                          " done; no report");
  };
  Progress progress(what, total, 0, unit);
  LogZEstimate estimate;
  try {
    estimate =
        with_progress(progress, done, [&] { return estimate_log_z(backend, params, options); });
  } catch (const Stopped&) {
    throw interrupted(signals.received());
  }
  // A signal after the last look.
  if (const int stop = signals.received(); stop != 0) throw interrupted(stop);
  return estimate;
}

// The flags that set AIS: refused with --method exact, named as unused when auto is exact.
constexpr const char* kAisFlags[] = {"--ais-runs", "--ais-betas", "--seed"};

// Numbers stay text until parse_int_flag checks them (host/command_flags.hpp).
struct EvalFlags {
  std::string model, data, digit, split = "test", method = "auto";
  std::string ais_runs = "100", ais_betas = std::to_string(LogZOptions{}.ais_betas), seed = "1";
  bool json = false;
};

LogZMethod parse_method(const std::string& text) {
  if (text == "auto") return LogZMethod::automatic;
  if (text == "exact") return LogZMethod::exact;
  if (text == "ais") return LogZMethod::ais;
  throw InputError("--method must be auto, exact or ais (got '" + text + "')");
}

// A selection of MNIST images, as load_mnist takes it.
struct Selection {
  std::optional<int> digit;  // nullopt: all ten
  Split split;
  bool operator==(const Selection&) const = default;
};

// The images in both selections, as a selection, or nullopt when they share none: MNIST's train and
// test splits are disjoint and its digits partition each, so the overlap is a selection too.
std::optional<Selection> overlap(const Selection& a, const Selection& b) {
  if (a.digit && b.digit && *a.digit != *b.digit) return std::nullopt;
  if (a.split != Split::all && b.split != Split::all && a.split != b.split) return std::nullopt;
  return Selection{a.digit ? a.digit : b.digit, a.split == Split::all ? b.split : a.split};
}

// {"digit": 3 or "all", "split": ..., "n_images": rows (null when unknown: their files are not
// there)}, or null for no selection.
nlohmann::json selection_json(const std::optional<Selection>& selection,
                              const std::optional<int64_t>& rows) {
  if (!selection) return nullptr;
  return {{"digit", selection->digit ? nlohmann::json(*selection->digit) : nlohmann::json("all")},
          {"split", split_name(selection->split)},
          {"n_images", rows ? nlohmann::json(*rows) : nlohmann::json(nullptr)}};
}

// "digit 3", "all ten digits".
std::string digits_text(const std::optional<int>& digit) {
  return digit ? "digit " + std::to_string(*digit) : "all ten digits";
}

// Fixed decimals for the usual magnitudes; 9 significant digits for huge ones.
std::string fixed(double v, int decimals = 3) { return format_number(v, decimals); }

}  // namespace

int run_eval_command(const std::string& program, const std::vector<std::string>& args) {
  CLI::App app{
      "evaluate a trained model: log Z (exact for H <= 24, ternary H <= 15, else annealed "
      "importance sampling), average log p(x) and exact pseudo-log-likelihood of MNIST images",
      program + " eval"};
  EvalFlags f;
  app.add_option("--model,model", f.model,
                 "run directory holding W.npy, b.npy [, a.npy, run.json (its recipe.hidden_type: "
                 "binary or ternary hidden units, binary when absent)]")
      ->required()
      ->type_name("DIR");
  app.add_option("--data", f.data,
                 "directory of the MNIST IDX files (default: the one run.json records, when it "
                 "exists, else data/mnist)")
      ->type_name("DIR");
  app.add_option("--digit", f.digit, "digit to score: 0..9 or all (default: run.json's, else 3)")
      ->type_name("DIGIT");
  app.add_option("--split", f.split, "MNIST split to score: test, train or all")
      ->capture_default_str()
      ->type_name("SPLIT");
  app.add_option(
         "--method", f.method,
         "log Z: auto (exact for H <= 24, ternary H <= 15), exact (H <= 30, ternary H <= 15) "
         "or ais")
      ->capture_default_str()
      ->type_name("METHOD");
  app.add_option("--ais-runs", f.ais_runs, "AIS runs per base model")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--ais-betas", f.ais_betas, "AIS steps (inverse temperatures)")
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--seed", f.seed, "seed of the AIS draws, 0..4294967295")
      ->capture_default_str()
      ->type_name("S");
  app.add_flag("--json", f.json, "print one JSON object instead of text");
  if (const auto exit_code = parse_command_flags(app, args)) return *exit_code;

  const int64_t ais_runs = parse_int_flag("--ais-runs", f.ais_runs, 2, 10'000'000, "2..1e7");
  const int64_t ais_betas = parse_int_flag("--ais-betas", f.ais_betas, 3, 100'000'000, "3..1e8");
  const int64_t seed = parse_int_flag("--seed", f.seed, 0, 0xFFFFFFFFll, "0..4294967295");
  const Split split = parse_split_flag("--split", f.split);
  const ImageChoice images_choice = images_flagged_or_recorded(
      f.digit, app.count("--data") > 0 ? std::optional(f.data) : std::nullopt, f.model);
  const auto& [digit_text, digit] = images_choice.digit;
  f.data = images_choice.data_dir;
  LogZOptions options;
  options.method = parse_method(f.method);
  for (const char* flag : kAisFlags) {
    if (options.method == LogZMethod::exact && app.count(flag) > 0) {
      throw InputError(std::string(flag) + " sets AIS, which --method exact does not run");
    }
  }
  options.ais_runs = ais_runs;
  options.ais_betas = ais_betas;
  options.seed = static_cast<uint32_t>(seed);

  const auto start = std::chrono::steady_clock::now();
  const Params params = read_model(f.model);  // finite, as read_model checks
  // Each selection read once: the scored images, the train split's (the AIS base rates), the
  // model's training images and the overlap of the first and the last are often the same ones.
  std::map<std::pair<int, Split>, Dataset> loaded;
  const auto load = [&](const Selection& s) -> const Dataset& {
    const std::pair key(s.digit.value_or(-1), s.split);
    auto it = loaded.find(key);
    if (it == loaded.end()) it = loaded.emplace(key, load_mnist(f.data, s.digit, s.split)).first;
    return it->second;
  };
  const Selection scored{digit, split};
  const Dataset& images = load(scored);
  // The train split's files serve AIS's base-rate model and the model's training images where
  // they include them; the test images score without them (an exact log Z, no gap).
  const std::optional<std::string> train_file_missing = missing_mnist_file(f.data, Split::train);
  const Dataset no_train_images;
  const Dataset& train = train_file_missing ? no_train_images : load({digit, Split::train});
  if (images.rows == 0) {
    throw InputError("no images match --digit " + digit_text + " and --split " + f.split);
  }
  if (images.cols() != params.visible) {
    throw InputError("--model " + f.model + " has " + std::to_string(params.visible) +
                     " visible units, the images " + std::to_string(images.cols()) + " pixels");
  }
  // Only AIS needs the train split's images (its base-rate model); an exact log Z does not.
  if (train.rows > 0) {
    options.base_rate = base_rate_biases(train);
  } else if (!log_z_is_exact(params, options)) {
    throw InputError("AIS takes its base-rate model from the train split's images of --digit " +
                     digit_text + ", and " + f.data +
                     (train_file_missing ? " has no " + *train_file_missing : " has none") +
                     (exact_log_z_possible(params) ? " (--method exact needs none)" : ""));
  }

  std::unique_ptr<Backend> backend = make_backend();
  backend->set_params(params);
  // The scored images' own mass bounds log Z too: an AIS that missed a model's modes (too few
  // temperatures for its weights) may otherwise put their average log p(x) above 0.
  options.images_lower_bound = images_log_z_lower_bound(params, images);
  const LogZEstimate log_z = estimate_log_z_showing_progress(program, *backend, params, options);
  // Float pre-activations overflow when d |W| passes FLT_MAX: a NaN estimate is no estimate.
  // (Training's --eval-every keeps it, and stops on a metric that is not finite, exit 3.)
  for (const AisBaseReport& base : log_z.bases) {
    if (!std::isfinite(base.summary.log_z)) {
      double max_weight = 0.0;
      for (const float w : params.W) max_weight = std::max(max_weight, std::fabs(double{w}));
      char text[160];
      std::snprintf(text, sizeof text,
                    "log Z = %g: the model's sums overflow in float (max |W| = %.3g)",
                    base.summary.log_z, max_weight);
      throw InputError(
          "--model " + f.model + ": AIS from the " + base.name + " model gave " + text +
          (exact_log_z_possible(params) ? "; --method exact computes it for this H" : ""));
    }
  }
  const double free_energy = mean_free_energy(params, images);
  // The model's training images, as run.json records their selection (the directory need not be
  // the recorded one: the selection names the same images in any copy of MNIST); unknown without
  // that record, and then no gap and no overlap are given rather than guessed.
  std::optional<Selection> trained;
  if (images_choice.trained_split && images_choice.trained_digit) {
    trained = Selection{images_choice.trained_digit->digit, *images_choice.trained_split};
  }
  // The recorded selection names the training images only in a copy of MNIST that holds them:
  // the trainer recorded their pixels' SHA-256, which these must match (another IDX set in --data
  // would otherwise be called the model's training images).
  // Without their files (only the test split's in --data) the record stands unchecked: the overlap
  // with the scored images is the selections', and there is no gap (nothing to average over).
  const std::optional<std::string> trained_file_missing =
      trained ? missing_mnist_file(f.data, trained->split) : std::nullopt;
  bool other_images = false;
  if (trained && !trained_file_missing && images_choice.trained_sha256 &&
      sha256_hex(load(*trained).pixels) != *images_choice.trained_sha256) {
    trained.reset();
    other_images = true;
  }
  // The gap compares like with like: the scored images against the model's training images of
  // the same digits (a model of all digits scored on threes: its training threes). The free energy
  // differs between digits by far more than any overfitting (a tester's all-digit model: test
  // threes 7.5 nats above all its training digits, 1.9 below its training threes), so where the
  // model was not trained on every scored digit there is no gap, and a note says why.
  std::optional<Selection> compared;
  if (trained && !trained_file_missing && (!trained->digit || trained->digit == scored.digit)) {
    compared = Selection{scored.digit, trained->split};
  }
  // An IDX set whose training split holds none of the scored digit: nothing to compare with.
  bool no_compared_images = false;
  if (compared && load(*compared).rows == 0) {
    compared.reset();
    no_compared_images = true;
  }
  std::optional<int64_t> trained_rows, compared_rows, scored_trained_rows;
  std::optional<double> free_energy_trained, free_energy_gap;
  if (trained) {
    if (!trained_file_missing) trained_rows = load(*trained).rows;
    // Within the scored images' selection, whose files are there.
    const std::optional<Selection> both = overlap(scored, *trained);
    scored_trained_rows = both ? load(*both).rows : 0;
  }
  if (compared) {
    const Dataset& compared_images = load(*compared);
    compared_rows = compared_images.rows;
    // The gap to held-out images; none when the scored images are the training images themselves.
    if (*compared == scored) {
      free_energy_trained = free_energy;
    } else {
      free_energy_trained = mean_free_energy(params, compared_images);
      free_energy_gap = free_energy - *free_energy_trained;
    }
  }
  const double avg_log_p = -free_energy - log_z.log_z;
  const double avg_pll = mean_pseudo_log_likelihood(params, images);
  const double recon = reconstruction_error(params, images);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // What a reader could misread, said beside the numbers (text) or in "notes" (JSON).
  std::vector<std::string> notes;
  // How many of the scored images the model was trained on: all (a run of split all trained on the
  // test split too), some (a digit's model scored on all digits), or none. Unknown without
  // run.json's record.
  const std::string trained_text = trained
                                       ? "run.json: digit " + images_choice.trained_digit->text +
                                             ", split " + split_name(trained->split)
                                       : "";
  if (images_choice.bad_trained_split) {
    notes.push_back(
        (std::filesystem::path(f.model) / "run.json").string() + "'s data.split " +
        *images_choice.bad_trained_split +
        " is not all, train or test: the model's training images are unknown, so there is no "
        "free-energy gap and no overlap with them");
  }
  if (trained_file_missing) {
    notes.push_back(
        "the model's training images (run.json: digit " + images_choice.trained_digit->text +
        ", split " + split_name(*images_choice.trained_split) + ") need " +
        (std::filesystem::path(f.data) / *trained_file_missing).string() +
        ", which is not there: no free-energy gap, and which scored images were "
        "training images is taken from run.json's record" +
        (images_choice.trained_sha256 ? ", without the check of its SHA-256 of them" : ""));
  }
  if (other_images) {
    notes.push_back("the images of run.json's digit and split in " + images_choice.data_dir +
                    " are not the model's training images (their SHA-256 differs from run.json's "
                    "data.sha256): no free-energy gap, and the overlap with them is unknown");
  }
  if (no_compared_images) {
    notes.push_back("the model's training images (" + trained_text + ") hold no image of " +
                    digits_text(scored.digit) + ": no free-energy gap");
  } else if (trained && trained->digit && trained->digit != scored.digit) {
    notes.push_back("the scored images are " + digits_text(scored.digit) +
                    "; the model was trained on " + digits_text(trained->digit) + " (" +
                    trained_text +
                    "): no free-energy gap, which would compare different digits' images");
  }
  if (trained && *trained == scored) {
    notes.push_back("the scored images are the model's training images (" + trained_text +
                    "): not a held-out score");
  } else if (scored_trained_rows && *scored_trained_rows == images.rows) {
    notes.push_back("the scored images were among the model's training images (" + trained_text +
                    "): not a held-out score" +
                    (free_energy_gap ? ", and the free-energy gap measures no overfitting" : ""));
  } else if (scored_trained_rows && *scored_trained_rows > 0) {
    notes.push_back(
        std::to_string(*scored_trained_rows) + " of the " + std::to_string(images.rows) +
        " scored images (" +
        format_number(
            100.0 * static_cast<double>(*scored_trained_rows) / static_cast<double>(images.rows),
            1) +
        "%) were among the model's training images (" + trained_text +
        "): partly a training score" +
        (free_energy_gap ? ", and the free-energy gap mixes training and held-out images" : ""));
  }
  if (log_z.method == "exact" && options.method == LogZMethod::automatic) {
    std::string unused;
    for (const char* flag : kAisFlags) {
      if (app.count(flag) > 0) unused += std::string(unused.empty() ? "" : ", ") + flag;
    }
    if (!unused.empty()) {
      notes.push_back(unused +
                      " not used: log Z is exact for this model (--method ais forces AIS)");
    }
  }
  // The +-3 sd interval is a plug-in normal one: when a few runs carry the estimate the sample's
  // spread says little about the weights' (exploratory testing saw intervals miss log Z at
  // ESS 1.3 of 100, and by 494 nats at ESS 1.0 of 10). ESS is at least 1, so with 10 runs or
  // fewer a tenth of them alone would never say so: below 2, one run carries it (below 1.5 of 2
  // runs, so that 2 runs of equal weight, ESS 2 but for rounding, pass).
  // Whatever the ESS, a schedule too short for the model puts every run's log weight low together,
  // which the runs' spread does not show: on an H 20 model with visible biases, 7 of 20 seeds'
  // intervals at 300 temperatures lay below the exact log Z (ESS 13 to 24 of 100; none of 20 at
  // 3000 or 14500; exploratory testing). Said when the user shortened it, with the ESS note or
  // without: the two are different failures.
  const double runs = static_cast<double>(ais_runs);
  const int64_t default_betas = LogZOptions{}.ais_betas;
  if (log_z.method == "ais" && !log_z.ais_below_bound &&
      *log_z.ess < std::max(0.1 * runs, std::min(2.0, runs - 0.5))) {
    notes.push_back("ESS " + format_number(*log_z.ess, 1) + " of " + std::to_string(ais_runs) +
                    " runs: a few runs carry the estimate, and its interval may not hold log Z; "
                    "more --ais-betas (or --ais-runs) make it reliable");
  }
  // Numbers that the sums' rounding may have moved. log p(x) is a difference of sums as large as
  // the pre-activations: the free energies take rows in double beyond a unit's reach of 2^12
  // (host/evaluate.cpp), and double keeps a thousandth of a nat up to about 2^36 (a tester's hidden
  // bias of 1e15 moved the exact log p(x) by 6.4 nats, 1e20 made it 0); AIS's samplers sum in
  // float, a thousandth of a nat a unit up to 2^12. A trained model's reach is tens to hundreds.
  {
    const bool ais = log_z.method == "ais";
    const double reach = largest_preactivation(params);
    const double limit = ais ? kFloatPreciseReach : kDoublePreciseReach;
    if (reach > limit) {
      char text[400];
      std::snprintf(text, sizeof text,
                    "the model's pre-activations reach %.3g (|b_j| + sum_i |W_ij|, or |a_i| + "
                    "sum_j |W_ij|), beyond the %.0f that %s carry to a thousandth of a nat: %s",
                    reach, limit, ais ? "AIS's float sums" : "double sums",
                    ais ? "log Z and avg log p(x) may be off by more than their interval says"
                        : "avg log p(x) and the PLL, differences of sums that large, may be off "
                          "by nats");
      notes.emplace_back(text);
    }
  }
  // Below the bound (the text's log Z line says so too) the note carries what may help to the
  // JSON: not a promise, since a mode that no run visits is missed at any schedule length (the
  // memorizing model of EvalCli.NotesSayWhatCouldBeMisread stays below at 1e5 temperatures).
  if (log_z.method == "ais" && log_z.ais_below_bound) {
    notes.push_back(
        "AIS fell below the exact lower bound of log Z, so only the bound is known: "
        "more --ais-betas may recover the missed mass, but not a mode that no run "
        "reaches at any schedule length");
  }
  if (log_z.method == "ais" && !log_z.ais_below_bound && ais_betas < default_betas) {
    notes.push_back("--ais-betas " + std::to_string(ais_betas) + ", fewer than the default " +
                    std::to_string(default_betas) +
                    ": a short schedule can put every run low together, which the interval (the "
                    "runs' spread) does not show; if log Z rises with more --ais-betas, this "
                    "one was low");
  }

  // An interval end that is not finite (AIS below the exact bound: host/log_z.hpp) is unknown.
  const auto json_or_null = [](double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  };
  const auto text_or_unknown = [](double v) { return std::isfinite(v) ? fixed(v) : "unknown"; };
  const auto optional_json = [](const auto& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  if (f.json) {
    nlohmann::json bases = nlohmann::json::object();
    for (const AisBaseReport& base : log_z.bases) {
      const AisSummary& s = base.summary;
      bases[base.name] = {{"log_z", s.log_z},
                          {"log_z_low", json_or_null(s.log_z_low)},
                          {"log_z_high", s.log_z_high},
                          {"ess", s.ess},
                          {"log_z_base", base.log_z_base},
                          {"seconds", base.seconds}};
    }
    nlohmann::json out = {
        {"model", f.model},
        {"backend", backend->name()},
        {"d", params.visible},
        {"H", params.hidden},
        {"hidden_type", hidden_type_name(params.hidden_type)},
        {"visible_bias", params.has_visible_bias()},
        {"digit", digit ? nlohmann::json(*digit) : nlohmann::json("all")},
        {"split", split_name(split)},
        {"n_images", images.rows},
        {"log_z", log_z.log_z},
        {"log_z_method", log_z.method},
        {"log_z_low", log_z.log_z_low},
        {"log_z_high", json_or_null(log_z.log_z_high)},
        {"log_z_lower_bound", log_z.lower_bound},
        {"log_z_lower_bound_from",
         log_z.lower_bound_from_images ? "scored images" : "hidden states"},
        {"ais_below_bound", log_z.ais_below_bound},
        {"ess", log_z.ess ? nlohmann::json(*log_z.ess) : nlohmann::json(nullptr)},
        {"avg_log_p", avg_log_p},
        {"avg_log_p_low", json_or_null(-free_energy - log_z.log_z_high)},
        {"avg_log_p_high", -free_energy - log_z.log_z_low},
        {"avg_pll", avg_pll},
        {"recon_error", recon},
        {"free_energy", free_energy},
        {"training_images", selection_json(trained, trained_rows)},
        // The images free_energy_train averages over: the training images of the scored digits.
        {"free_energy_train_images", selection_json(compared, compared_rows)},
        {"free_energy_train", optional_json(free_energy_trained)},
        {"free_energy_gap", optional_json(free_energy_gap)},
        {"log_z_seconds", log_z.seconds},
        {"seconds", seconds},
        // true: all of the scored images were training images (the count says how many when not).
        {"scored_training_images", scored_trained_rows
                                       ? nlohmann::json(*scored_trained_rows == images.rows)
                                       : nlohmann::json(nullptr)},
        {"scored_training_image_count", optional_json(scored_trained_rows)},
        {"scored_training_image_fraction",
         scored_trained_rows ? nlohmann::json(static_cast<double>(*scored_trained_rows) /
                                              static_cast<double>(images.rows))
                             : nlohmann::json(nullptr)},
        {"notes", notes}};
    if (log_z.method == "ais") {
      out["ais"] = {{"runs", ais_runs},
                    {"betas", ais_betas},
                    {"seed", seed},
                    {"base_rate_images", train.rows},
                    {"chosen_base", log_z.chosen_base},
                    {"bases", bases}};
    }
    // Paths that are not valid UTF-8 (a model or --data directory named so) cannot be JSON text:
    // their invalid bytes print as U+FFFD.
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }

  std::printf("model %s (d = %d, H = %d %s, visible bias: %s) on %s\n", f.model.c_str(),
              params.visible, params.hidden, hidden_type_name(params.hidden_type),
              params.has_visible_bias() ? "yes" : "no", backend->device_description().c_str());
  std::printf("images      digit %s, split %s: %lld images\n", digit_text.c_str(),
              split_name(split), static_cast<long long>(images.rows));
  for (const AisBaseReport& base : log_z.bases) {
    const AisSummary& s = base.summary;
    std::printf("AIS %-9s %lld runs x %lld betas, seed %lld: log Z %s [%s, %s] ESS %.1f, %.1f s\n",
                base.name.c_str(), static_cast<long long>(ais_runs),
                static_cast<long long>(ais_betas), static_cast<long long>(seed),
                fixed(s.log_z).c_str(), text_or_unknown(s.log_z_low).c_str(),
                fixed(s.log_z_high).c_str(), s.ess, base.seconds);
  }
  if (log_z.method == "exact") {
    std::printf("log Z       %s exact (enumerating %d^%d hidden states, %.1f s)\n",
                fixed(log_z.log_z, 6).c_str(), params.hidden_type == HiddenType::ternary ? 3 : 2,
                params.hidden, log_z.seconds);
  } else {
    std::printf(
        "log Z       %s [%s, %s] (+-3 sd) AIS from the %s base, ESS %.1f; exact lower "
        "bound %s%s\n",
        fixed(log_z.log_z).c_str(), fixed(log_z.log_z_low).c_str(),
        text_or_unknown(log_z.log_z_high).c_str(), log_z.chosen_base.c_str(), *log_z.ess,
        fixed(log_z.lower_bound).c_str(),
        log_z.lower_bound_from_images ? " (the scored images' own mass)" : "");
    if (log_z.ais_below_bound) {
      std::printf(
          "            AIS fell below the exact lower bound: it missed mass, and log Z is known "
          "only to be at least %s (and avg log p at most %s)\n",
          fixed(log_z.lower_bound).c_str(), fixed(-free_energy - log_z.lower_bound).c_str());
    }
  }
  std::printf("avg log p  %s nats [%s, %s]\n", fixed(avg_log_p).c_str(),
              text_or_unknown(-free_energy - log_z.log_z_high).c_str(),
              fixed(-free_energy - log_z.log_z_low).c_str());
  std::printf("avg PLL    %s nats (exact, all %d pixels)\n", fixed(avg_pll).c_str(),
              params.visible);
  std::printf("recon err  %.5f (mean-field, per pixel)\n", recon);
  // The gap shows overfitting when the scored images were held out (the notes say when not).
  if (other_images || images_choice.bad_trained_split || trained_file_missing) {
    std::printf("free energy %s here; no gap (see the note)\n", fixed(free_energy).c_str());
  } else if (trained && !compared) {
    std::printf("free energy %s here; no gap: the model was not trained on %s (see the note)\n",
                fixed(free_energy).c_str(),
                no_compared_images ? "images of this digit"
                : scored.digit     ? "this digit"
                                   : "all of these digits");
  } else if (!trained) {
    const bool recorded = std::filesystem::exists(std::filesystem::path(f.model) / "run.json");
    std::printf("free energy %s here; no gap: %s the model's training images (digit, split)\n",
                fixed(free_energy).c_str(),
                recorded ? "its run.json does not record" : "no run.json records");
  } else if (const std::string which =  // "of digit 3" where the model had more digits than these
             *compared == *trained ? "" : " of " + digits_text(compared->digit);
             *compared == scored) {
    std::printf("free energy %s here, on the model's training images%s themselves (%s): no gap\n",
                fixed(free_energy).c_str(), which.c_str(), trained_text.c_str());
  } else {
    std::printf("free energy %s here, %s on the model's %lld training images%s (%s; gap %s)\n",
                fixed(free_energy).c_str(), fixed(*free_energy_trained).c_str(),
                static_cast<long long>(*compared_rows), which.c_str(), trained_text.c_str(),
                fixed(*free_energy_gap).c_str());
  }
  for (const std::string& note : notes) std::printf("note       %s\n", note.c_str());
  std::printf("time       %.1f s\n", seconds);
  return 0;
}

}  // namespace rbm
