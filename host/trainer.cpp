// The `train` command (see trainer.hpp).
#include "host/trainer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/errors.hpp"
#include "host/metrics.hpp"
#include "host/model_io.hpp"
#include "host/png_image.hpp"
#include "host/progress.hpp"
#include "host/sha256.hpp"
#include "host/signals.hpp"
#include "host/stop.hpp"
#include "host/train_eval.hpp"
#include "host/version.hpp"

namespace rbm {
namespace {

constexpr int64_t kMetricsBatch = 500;  // images per fixed metrics batch

int64_t checkpoint_interval(const TrainOptions& options) {
  return options.checkpoint_every > 0 ? options.checkpoint_every : options.log_every;
}

// A float flag as run.json records it: the shortest decimal that reads back as the same float
// (0.005, not the double 0.004999999888241291 that it widens to), which --resume reads as that
// float again.
double shortest_decimal(float v) {
  std::array<char, 32> text{};
  const auto [end, error] = std::to_chars(text.data(), text.data() + text.size(), v);
  if (error != std::errc()) return static_cast<double>(v);
  return std::strtod(std::string(text.data(), end).c_str(), nullptr);
}

nlohmann::json run_record(const TrainOptions& options, const Backend& backend,
                          const std::string& data_sha256, const std::string& heldout_sha256,
                          int64_t train_rows, int64_t iteration, double seconds) {
  Recipe r = options.recipe;
  r.iters = total_updates(r, train_rows);  // --epochs resolved to updates
  const int64_t checkpoint_every = checkpoint_interval(options);
  nlohmann::json recipe = {{"iters", r.iters},
                           {"hidden", r.hidden},
                           {"lr", shortest_decimal(r.lr)},
                           {"k", r.k},
                           {"seed", r.seed},
                           {"init_std", shortest_decimal(r.init_std)},
                           {"visible_bias", r.visible_bias},
                           {"hidden_type", hidden_type_name(r.hidden_type)},
                           // minibatch CD / PCD (host/minibatch.hpp); the defaults: single-sample
                           {"batch", r.batch},
                           {"pcd", r.pcd},
                           {"chains", r.pcd ? negative_samples(r) : 0},  // PCD: N, resolved
                           {"momentum", shortest_decimal(r.momentum)},
                           {"weight_decay", shortest_decimal(r.weight_decay)},
                           {"epochs", r.epochs},
                           {"lr_decay", r.lr_decay == LrDecay::linear ? "linear" : "none"}};
  // Absolute, so that --resume finds the data from any working directory.
  nlohmann::json data = {{"dir", std::filesystem::absolute(options.data_dir).string()},
                         {"digit", options.digit ? nlohmann::json(*options.digit) : "all"},
                         {"split", split_name(options.split)},
                         {"rows", train_rows},
                         {"binarize", "pixel > 127.5"},
                         {"sha256", data_sha256}};
  // The held-out split's images, which the *_heldout metrics score (none with --split all).
  if (!heldout_sha256.empty()) data["heldout_sha256"] = heldout_sha256;
  return {
      {"program", "rbm"},
      {"version", version()},
      {"git_commit", git_commit()},
      {"backend", backend.name()},
      {"device", backend.device_description()},
      {"algorithm", algorithm_name(r)},
      {"recipe", recipe},
      {"data", data},
      {"schedule",
       {{"log_every", options.log_every},
        {"checkpoint_every", checkpoint_every},
        {"eval_every", options.eval_every}}},
      {"iteration", iteration},
      // The RNG is counter-based: every draw is named by the seed and the iteration (or
      // update) it belongs to (host/minibatch.hpp for updates), so its position is the next
      // one. (Runs before this recorded it as next_stream, which only the single-sample
      // recipe's draws are: stream = iteration.)
      {"rng", {{"generator", "philox4x32-10"}, {"seed", r.seed}, {"next_iteration", iteration}}},
      {"train_seconds", seconds}};
}

// A new run never overwrites the files of another (a finished run, a checkpoint): they are the
// result of someone's training.
void refuse_to_overwrite_a_run(const std::filesystem::path& dir) {
  const bool never_checkpointed = stopped_before_its_first_checkpoint(dir);
  for (const std::string& name : run_file_names()) {
    if (name == "metrics.csv" && never_checkpointed) continue;
    std::error_code error;
    if (std::filesystem::exists(dir / name, error) || error) {
      // --resume reads run.json: without one there is no run to continue (a weights.png copied
      // in by hand; exploratory tester), and the advice would only lead to another refusal.
      std::error_code run_json_error;
      const bool resumable = std::filesystem::exists(dir / "run.json", run_json_error);
      throw InputError(
          "--out " + dir.string() + " already holds " + name +
          ": a new run does not overwrite a run's files (" +
          (resumable ? "--resume " + dir.string() + " continues the run there; " : "") +
          "choose another --out for a new one)");
    }
  }
}

// What a new run with --init-std 0 will not learn, said once it starts (after every refusal; an
// exploratory tester's ternary run trained for nothing): every hidden unit starts alike, and CD's
// updates, made of the units' probabilities (means), treat alike units alike, so they stay alike
// (checked on every CPU path: single-sample, minibatch, PCD with momentum and weight decay);
// ternary units' mean at 0 is G(0) = 0, so W and b do not change at all (the visible biases a, with
// --visible-bias, do). Empty when the run will learn.
std::string symmetric_start_note(const Recipe& recipe) {
  if (recipe.init_std != 0.0f) return "";
  if (recipe.hidden_type == HiddenType::ternary) {
    return "--init-std 0 with ternary hidden units starts at W = 0, b = 0, where CD's updates of "
           "W and b are 0 (a unit's mean G(0) is 0): W and b will not change (a small "
           "--init-std, such as 0.01, starts them off it)";
  }
  if (recipe.hidden == 1) return "";
  return "--init-std 0 starts every hidden unit alike, and CD's updates (of the units' "
         "probabilities) keep them alike: the " +
         std::to_string(recipe.hidden) +
         " units will learn one feature (a small --init-std, such as 0.01, tells them apart)";
}

}  // namespace

std::optional<Split> heldout_split(Split split) {
  switch (split) {
    case Split::train:
      return Split::test;
    case Split::test:
      return Split::train;
    case Split::all:
      break;
  }
  return std::nullopt;
}

namespace {

// The first of NAME, NAME-2, NAME-3, ... that does not exist, created (its parent too). mkdir
// fails on a name that exists, so two runs started in the same second get one directory each.
std::filesystem::path create_new_run_directory(const std::filesystem::path& name) {
  std::error_code error;
  if (!name.parent_path().empty()) std::filesystem::create_directories(name.parent_path(), error);
  if (error) {
    throw InputError(name.parent_path().string() + ": cannot create: " + error.message());
  }
  constexpr int kMaxSuffix = 1000;
  for (int suffix = 1; suffix <= kMaxSuffix; ++suffix) {
    const std::filesystem::path dir =
        suffix == 1 ? name : std::filesystem::path(name.string() + "-" + std::to_string(suffix));
    if (::mkdir(dir.c_str(), 0777) == 0) return dir;
    if (errno != EEXIST) {
      throw InputError(dir.string() + ": cannot create: " + std::strerror(errno));
    }
  }
  throw InputError(name.string() + ": it and " + std::to_string(kMaxSuffix - 1) +
                   " numbered names like it exist; name the run's directory with --out");
}

// `dir` as an absolute path without "." or ".." or a trailing separator ("runs/x/" names runs/x),
// so that a directory and its parents compare as paths.
std::filesystem::path normal_directory(const std::filesystem::path& dir) {
  std::filesystem::path path = std::filesystem::absolute(dir).lexically_normal();
  return path.has_filename() ? path : path.parent_path();
}

// The outermost of `dir` and its parents that does not exist yet (what creating `dir` makes), or an
// empty path when `dir` exists.
std::filesystem::path outermost_missing_directory(const std::filesystem::path& dir) {
  std::filesystem::path path = normal_directory(dir);
  std::filesystem::path missing;
  std::error_code error;
  while (!path.empty() && path != path.root_path() && !std::filesystem::exists(path, error)) {
    missing = path;
    path = path.parent_path();
  }
  return missing;
}

// A new run's first piece failed, or its iteration-0 checkpoint: its directory holds only that
// checkpoint (or what of it was written) of a run that never trained (a minibatch run's chains
// are allocated in the first piece, so more --chains than memory holds fails there). Its files go,
// and the directories the run created (`created`, the outermost of them, empty when --out existed):
// the corrected command can take the same --out. Returns what was removed, or what could not be,
// for the error message.
std::string remove_unstarted_run(const std::filesystem::path& dir,
                                 const std::filesystem::path& created) {
  // The run's files and their staged NAME.next (a first checkpoint whose write failed).
  std::vector<std::filesystem::path> files;
  std::error_code listing;
  for (const auto& entry : std::filesystem::directory_iterator(dir, listing)) {
    if (is_run_file_name(entry.path().filename().string())) files.push_back(entry.path());
  }
  std::string failed = listing ? dir.string() + " (" + listing.message() + ")" : "";
  for (const std::filesystem::path& file : files) {
    std::error_code error;
    std::filesystem::remove(file, error);
    if (error) failed += (failed.empty() ? "" : ", ") + file.string();
  }
  if (!failed.empty()) return "the new run's files could not all be removed: " + failed;
  if (created.empty()) return "the new run's files were removed from " + dir.string();
  std::filesystem::path path = normal_directory(dir);
  std::error_code error;
  if (!std::filesystem::remove(path, error)) {
    return "the new run's files were removed; its directory " + dir.string() + " could not be (" +
           (error ? error.message() : "not empty") + ")";
  }
  // The parents it made, while empty (another run may have made its directory in one since); none
  // when `created` is not among them.
  const std::filesystem::path below_created = path.lexically_relative(created);
  const bool made_parents = !below_created.empty() && *below_created.begin() != "..";
  while (made_parents && path != created && path != path.parent_path()) {
    path = path.parent_path();
    if (!std::filesystem::remove(path, error)) break;
  }
  return "the new run directory " + dir.string() + " was removed";
}

// Called from a handler of the exception that a new run's first piece (or first checkpoint) threw:
// removes the run (remove_unstarted_run) and throws that exception again with what was removed in
// its message.
// Out of memory there is a refused request (exit 2) naming the flags that size the first update;
// anything else keeps its kind (an InputError exit 2, a CUDA error exit 1).
[[noreturn]] void rethrow_after_removing_unstarted_run(const std::filesystem::path& dir,
                                                       const std::filesystem::path& created) {
  const std::string removed = remove_unstarted_run(dir, created);
  try {
    throw;
  } catch (const std::bad_alloc&) {
    throw InputError(
        "out of memory: the run's first update needs more memory than this machine gives (fewer "
        "--chains, a smaller --hidden or --batch); " +
        removed);
  } catch (const InputError& e) {
    throw InputError(std::string(e.what()) + "; " + removed);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + "; " + removed);
  }
}

}  // namespace

void run_training(Backend& backend, const TrainOptions& options) {
  const auto invocation_start = std::chrono::steady_clock::now();
  std::filesystem::path out_dir = options.out_dir;  // a default name may change when it is made
  Recipe recipe = options.recipe;
  // run.json records the data directory's absolute path (run_record).
  if (const std::string data_dir = std::filesystem::absolute(options.data_dir).string();
      !is_valid_utf8(data_dir)) {
    throw InputError("--data " + options.data_dir.string() + ": the path " + data_dir +
                     " is not valid UTF-8, and run.json records it as JSON text; use a path "
                     "that is (a link to the directory will do)");
  }
  const Dataset train = load_mnist(options.data_dir, options.digit, options.split);
  if (train.rows == 0) {
    throw InputError("no training images match --digit " +
                     (options.digit ? std::to_string(*options.digit) : std::string("all")) +
                     " and --split " + split_name(options.split));
  }
  // Minibatch CD / PCD (host/minibatch.hpp): checked against the images, and --epochs resolved to
  // updates, so that iters is the run's length on either path.
  if (uses_minibatch(recipe)) check_minibatch_recipe(recipe, train.rows);
  recipe.iters = total_updates(recipe, train.rows);
  if (recipe.iters < 1) throw InputError("the run has no updates (--epochs with too few images?)");
  std::optional<Dataset> heldout;
  std::string heldout_sha256;  // empty: no held-out images
  if (const auto other = heldout_split(options.split)) {
    const Dataset images = load_mnist(options.data_dir, options.digit, *other);
    // The held-out metrics are means over these images: none would make them NaN at the first
    // log point, a "training diverged" that no --lr cures.
    if (images.rows == 0) {
      throw InputError("no held-out images match --digit " +
                       (options.digit ? std::to_string(*options.digit) : std::string("all")) +
                       " in the " + split_name(*other) + " split (--split " +
                       split_name(options.split) + " scores the model on it); --split all trains " +
                       "on both splits without held-out metrics");
    }
    heldout_sha256 = sha256_hex(images.pixels);
    heldout = fixed_batch(images, kMetricsBatch);
  }
  const Dataset train_batch = fixed_batch(train, kMetricsBatch);
  const std::string data_sha256 = sha256_hex(train.pixels);
  const ResumeFrom* resume = options.resume ? &*options.resume : nullptr;
  if (resume && resume->data_sha256 != data_sha256) {
    throw InputError("--resume " + out_dir.string() + ": the training images in " +
                     options.data_dir.string() + " are not the run's (SHA-256 " + data_sha256 +
                     ", the run's " + resume->data_sha256 + ")");
  }
  // The held-out images too: other ones would change the *_heldout columns of metrics.csv from
  // the resume on, without a word. (A run.json written before the field was recorded: unchecked.)
  if (resume && resume->heldout_sha256 && *resume->heldout_sha256 != heldout_sha256) {
    throw InputError("--resume " + out_dir.string() + ": the held-out images in " +
                     options.data_dir.string() + " are not the run's (SHA-256 " + heldout_sha256 +
                     ", the run's " + *resume->heldout_sha256 + ")");
  }
  if (resume && resume->params.visible != train.cols()) {
    throw InputError("--resume " + out_dir.string() + ": the model has " +
                     std::to_string(resume->params.visible) + " visible units, the images " +
                     std::to_string(train.cols()) + " pixels");
  }

  const auto out = [&](const char* name) { return out_dir / name; };
  Params params = resume ? resume->params : init_params(recipe, train);
  const bool with_eval = options.eval_every > 0;
  std::string metrics_csv = resume ? resume->metrics_csv : metrics_csv_header(with_eval);
  const std::vector<float> base_rate = with_eval ? base_rate_biases(train) : std::vector<float>();
  double train_seconds = resume ? resume->train_seconds : 0.0;
  int64_t done = resume ? resume->iteration : 0;
  int64_t checkpoint_at = done;  // the iteration of the checkpoint on disk
  bool checkpoint_on_disk = resume != nullptr;
  // A minibatch run's checkpoint also holds its training state (momentum velocities, PCD chains),
  // so that a resumed run continues exactly; the state before the first update is empty.
  const bool minibatch = uses_minibatch(recipe);
  TrainingState state = resume ? resume->state : TrainingState();
  // A write of the run directory that fails (a full disk) once a checkpoint is on disk says which
  // one --resume takes up: the one at `at`, which `fate` ("stays", "is written all the same").
  // A directory moved or removed while the run trains fails its next write too: the checkpoint
  // went wherever the directory went, and --resume of the old path would find nothing.
  const auto write_failed = [&](const std::exception& e, int64_t at, const char* fate) {
    const char* what_resume_does = at == recipe.iters ? " finishes the run" : " continues from it";
    std::error_code error;
    if (!std::filesystem::exists(out_dir, error) && !error) {
      return InputError(std::string(e.what()) + "; the run directory " + out_dir.string() +
                        " is gone (moved or removed during the run): if it was moved, --resume of "
                        "its new path" +
                        what_resume_does + " (the checkpoint at iteration " + std::to_string(at) +
                        ")");
    }
    return InputError(std::string(e.what()) + "; the checkpoint at iteration " +
                      std::to_string(at) + " " + fate + ": --resume " + out_dir.string() +
                      what_resume_does);
  };
  // run.json gets `row_missing` as metrics_row_missing unless it is null (the resumed row's stop).
  const auto write_checkpoint_now = [&](const nlohmann::json& row_missing = nullptr) {
    std::vector<CheckpointFile> files = param_files(params);
    for (CheckpointFile& file : training_state_files(state)) files.push_back(std::move(file));
    nlohmann::json record =
        run_record(options, backend, data_sha256, heldout_sha256, train.rows, done, train_seconds);
    if (!row_missing.is_null()) record["metrics_row_missing"] = row_missing;
    try {
      write_checkpoint(out_dir, done, files, record);
    } catch (const CheckpointWriteError& e) {
      if (e.committed) throw write_failed(e, done, "is written all the same");
      if (checkpoint_on_disk) throw write_failed(e, checkpoint_at, "stays");
      throw;
    }
    checkpoint_at = done;
    checkpoint_on_disk = true;
  };
  // From here a SIGINT, SIGTERM or SIGHUP stops the run at its next look, after the first
  // checkpoint (host/signals.hpp), so that no signal leaves a new directory without one.
  StopSignals signals(options.program,
                      "the run stops when the work in progress ends (one update, or a "
                      "computation that cannot stop part way) and writes a checkpoint",
                      ", and --resume continues from the last checkpoint");
  // The backend takes the images and the parameters before a new run's directory is made: a model
  // or data too large for it is refused with nothing on disk.
  backend.stage(train);
  backend.set_params(params);
  if (minibatch) backend.set_training_state(state);
  std::optional<DirectoryLock> new_run_lock;  // a resumed run holds resume->lock
  std::filesystem::path created_dirs;  // the outermost directory a new run made, if it made any
  if (!resume) {
    if (options.out_dir_is_default) {
      created_dirs = outermost_missing_directory(out_dir.parent_path());
      out_dir = create_new_run_directory(out_dir);
      if (created_dirs.empty()) created_dirs = normal_directory(out_dir);
    } else {
      created_dirs = outermost_missing_directory(out_dir);
      std::error_code error;
      const std::filesystem::file_status out_status =
          examined_status(out_dir, "--out " + out_dir.string());  // a symlink loop, ...
      if (!std::filesystem::exists(out_status) && std::filesystem::is_symlink(out_dir, error)) {
        throw InputError("--out " + out_dir.string() + ": a symbolic link to " +
                         std::filesystem::read_symlink(out_dir, error).string() +
                         ", which does not exist");
      }
      std::filesystem::create_directories(out_dir, error);
      if (error) {
        throw InputError("--out " + out_dir.string() + ": cannot create: " + error.message());
      }
    }
    try {
      new_run_lock.emplace(out_dir);
    } catch (const InputError& e) {
      throw InputError(std::string("--out ") + e.what());
    }
    refuse_to_overwrite_a_run(out_dir);
    remove_stale_files(out_dir);  // a stopped run's, which no --resume would now tidy
    try {
      write_file_atomic(out("metrics.csv"), metrics_csv);  // fails early if --out is not writable
    } catch (const InputError& e) {
      throw InputError("--out " + out_dir.string() + ": " + e.what());
    }
    try {
      write_checkpoint_now();  // a run can be resumed from its start
    } catch (const InputError&) {
      rethrow_after_removing_unstarted_run(out_dir, created_dirs);
    }
  } else if (access(out_dir.c_str(), W_OK | X_OK) != 0) {
    // Refused now, not at the first log point, after the training up to it (a read-only mount
    // fails this for root too: EROFS).
    throw InputError("--resume " + out_dir.string() +
                     ": cannot write in it: " + std::strerror(errno));
  }

  if (!resume) {
    if (const std::string note = symmetric_start_note(recipe); !note.empty()) {
      std::fprintf(stderr, "%s: note: %s\n", options.program.c_str(), note.c_str());
    }
  }
  const int64_t first = done;
  const int64_t log_every = options.log_every, checkpoint_every = checkpoint_interval(options);
  Progress progress("train", recipe.iters, first);
  // Pieces of about 0.05 s between looks at the stop signals (and redraws of an
  // interactive progress bar); metrics every log_every and a checkpoint every checkpoint_every.
  // Training in pieces gives the same result as in one call (host/backend.hpp).
  // The first piece is one iteration, and each next one at most twice the last: an iteration may
  // take seconds (a large --k, --hidden or --batch), so no guess of its cost comes first.
  PieceSizer pieces(0.05);
  std::string last_metrics;
  const auto diverged = [&](const std::string& what) {
    progress.finish();
    // With weight decay, lr times it past 2 makes each step overshoot: either can be the cause.
    const char* lower = recipe.weight_decay > 0.0f ? "lower --lr or --weight-decay" : "lower --lr";
    // Found where the values are looked at, after the step that diverged: the iteration named is
    // the check's (a tester read it as the step's).
    return DivergenceError("training diverged: " + what + " at the check of iteration " +
                           std::to_string(done) +
                           " (values are checked at log points and checkpoints; " + lower +
                           "); the last good checkpoint, iteration " +
                           std::to_string(checkpoint_at) + ", is in " + out_dir.string());
  };
  const auto take_state = [&] {
    state = resumable_state(recipe, backend.get_training_state());
    if (!(all_finite(state.vW) && all_finite(state.vb) && all_finite(state.va))) {
      throw diverged("a momentum velocity is not finite");
    }
  };
  // A log point's metrics look at the signals too (host/stop.hpp): they can take far longer than
  // a piece (--eval-every's AIS: 11 s at H 500 on 2 cores), and a signal stops them within about a
  // millisecond of work, or one metrics GEMM (host/evaluate.hpp). Nothing when one did.
  const StopRequest stop_request = [&signals] { return signals.received() != 0; };
  const auto log_point_row = [&](bool eval_now) -> std::optional<MetricsRow> {
    try {
      MetricsRow row = compute_metrics(params, train_batch, heldout ? &*heldout : nullptr, done,
                                       train_seconds, stop_request);
      if (eval_now) {
        row.eval = evaluate_for_metrics(backend, params, train_batch, heldout ? &*heldout : nullptr,
                                        base_rate, recipe.seed, stop_request);
      }
      return row;
    } catch (const Stopped&) {
      return std::nullopt;
    }
  };
  const auto append_row = [&](const MetricsRow& row) {
    if (!metrics_finite(row)) throw diverged("a metric is not finite");
    metrics_csv += metrics_csv_line(row, with_eval);
    try {
      write_file_atomic(out("metrics.csv"), metrics_csv);
    } catch (const InputError& e) {
      throw write_failed(e, checkpoint_at, "stays");  // a log point comes after a checkpoint
    }
    last_metrics = format_metrics(row);
  };
  const auto write_mosaic = [&] {  // after the checkpoint at `done`
    const GrayImage mosaic = weight_mosaic(params);
    try {
      write_png_gray(out("weights.png"), mosaic.width, mosaic.height, mosaic.pixels);
    } catch (const InputError& e) {
      throw write_failed(e, checkpoint_at, "stays");
    }
  };
  // `checkpoint` says where the checkpoint at `done` is, after "at iteration N of M". The mosaic
  // of the parameters reached is drawn too: what the stopped run has learned so far.
  const auto interrupted = [&](int stop, const std::string& checkpoint) {
    progress.finish();
    write_mosaic();
    return Interrupted(stop, "interrupted by " + signal_name(stop) + " at iteration " +
                                 std::to_string(done) + " of " + std::to_string(recipe.iters) +
                                 checkpoint + out_dir.string() + "; continue it with --resume " +
                                 out_dir.string());
  };
  // A signal during the metrics of the checkpoint's iteration left it without its row: the row
  // comes first, from the checkpoint's parameters (exactly what it describes, and the AIS draws
  // depend on the seed alone), so that metrics.csv ends as an uninterrupted run's.
  const bool resumed_row = resume && resume->row_missing;
  if (resumed_row) {
    // A new end (--iters at the checkpoint) is recorded before its row is written, with the row
    // as missing: a kill between the two leaves a run.json that names the row's point, not a row
    // at a point the recorded run does not have.
    if (resume->ends_here) write_checkpoint_now(nlohmann::json{{"eval", resume->row_with_eval}});
    const std::optional<MetricsRow> row = log_point_row(resume->row_with_eval);
    // Stopped again: the checkpoint is this very state, still without its row, written again so
    // that run.json records this invocation's --iters (the message's "of N"). That moves the end
    // that made the iteration a log point (or an --eval-every one) when it was the stopped run's,
    // so run.json says itself that the row is missing, and whether with eval.
    if (!row) {
      write_checkpoint_now(nlohmann::json{{"eval", resume->row_with_eval}});
      throw interrupted(signals.received(), ", before its metrics row; checkpoint written to ");
    }
    append_row(*row);
    // run.json says the row is missing (metrics_row_missing): the checkpoint again, without it.
    if (resume->row_missing_recorded || resume->ends_here) write_checkpoint_now();
    progress.update(done, last_metrics);
  } else if (resume && resume->ends_here) {
    write_checkpoint_now();  // run.json records the new end
  }
  while (done < recipe.iters) {
    const int64_t next_log = std::min(recipe.iters, (done / log_every + 1) * log_every);
    const int64_t next_checkpoint =
        std::min(recipe.iters, (done / checkpoint_every + 1) * checkpoint_every);
    const int64_t count = std::min({pieces.next(), next_log - done, next_checkpoint - done});
    const auto start = std::chrono::steady_clock::now();
    try {
      run_updates(backend, recipe, done, count);  // train_cd, or train_minibatch
    } catch (...) {
      if (resume || done > 0) throw;
      progress.finish();
      rethrow_after_removing_unstarted_run(out_dir, created_dirs);
    }
    done += count;
    int stop = signals.received();
    const bool log_now = done == next_log;
    bool checkpoint_now = done == next_checkpoint || stop != 0;
    if (log_now || checkpoint_now) params = backend.get_params();  // waits for an async backend
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    train_seconds += seconds;
    pieces.took(count, seconds);
    // Every check comes before any write, so a non-finite value never reaches the disk.
    if ((log_now || checkpoint_now) && !all_finite(params)) {
      throw diverged("a parameter is not finite");
    }
    if (checkpoint_now && minibatch) take_state();
    bool row_stopped = false;
    if (log_now) {
      // A signal that came during the piece stops the metrics at their first look.
      const std::optional<MetricsRow> row =
          log_point_row(with_eval && (done % options.eval_every == 0 || done == recipe.iters));
      if (row) {
        append_row(*row);
      } else {  // the checkpoint at this point, without its row (ResumeFrom::row_missing)
        row_stopped = true;
        stop = signals.received();
        if (!checkpoint_now && minibatch) take_state();
        checkpoint_now = true;
      }
    }
    // The end's checkpoint and what follows finish the run, whatever signal comes now.
    if (done == recipe.iters && stop == 0) signals.stop_acknowledging();
    if (checkpoint_now) write_checkpoint_now();
    // At the run's end too: a signal during its last piece or last row stopped that row's metrics,
    // and the checkpoint at the end lacks the row (a signal after them lets the run finish).
    if (stop != 0) {
      throw interrupted(stop, row_stopped ? ", before its metrics row; checkpoint written to "
                                          : "; checkpoint written to ");
    }
    if (log_now || progress.interactive()) progress.update(done, last_metrics);
  }
  progress.finish();
  signals.stop_acknowledging();  // a resumed run at its end, which computed only its last row

  write_mosaic();
  // A minibatch run counts updates of --batch images; the single-sample recipe, iterations.
  const char* unit = minibatch ? "update" : "iteration";
  if (first == recipe.iters && resume && resume->ends_here) {
    std::printf("the run ends at %s %lld, where it had stopped (--iters %lld)%s\n", unit,
                static_cast<long long>(first), static_cast<long long>(recipe.iters),
                resumed_row ? ": computed its last metrics row" : "");
  } else if (first == recipe.iters && resumed_row) {
    // The run had ended; a signal had stopped only its last metrics row.
    std::printf(
        "the run is at its end, %s %lld: computed its last metrics row, which a signal had "
        "stopped\n",
        unit, static_cast<long long>(first));
  } else if (first == recipe.iters && resume) {
    // A linearly decaying rate fixes the run's length (resume_options refuses another --iters).
    std::printf("the run is already at %s %lld: nothing to train (%s)\n", unit,
                static_cast<long long>(first),
                recipe.lr_decay == LrDecay::linear ? "its --lr-decay linear schedule has ended"
                                                   : "--iters extends it");
  } else {
    // Time and rate of the updates over the whole run, the pieces before a resume included; the
    // progress lines' rates count the metrics and checkpoints too, as this invocation's wall time
    // does.
    const std::string resumed = resume ? " (resumed at " + std::to_string(first) + ")" : "";
    const double wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - invocation_start).count();
    std::printf(
        "trained %lld %s%s%s on %lld images with %s in %.3f s of updates (%.2f us/%s%s); this "
        "invocation took %.1f s in all, with the data's loading, the metrics and the checkpoints\n",
        static_cast<long long>(recipe.iters), unit, recipe.iters == 1 ? "" : "s", resumed.c_str(),
        static_cast<long long>(train.rows), backend.name().c_str(), train_seconds,
        1e6 * train_seconds / static_cast<double>(recipe.iters), unit,
        resume ? ", both over all of the run's invocations" : "", wall_seconds);
  }
  // What this invocation wrote: a resumed run with nothing to train redrew only the mosaic, and
  // the row a signal had stopped, if it computed one (and the checkpoint, if run.json said so).
  std::string written = resumed_row ? "metrics.csv weights.png" : "weights.png";
  if (first != recipe.iters || !resume || resume->ends_here ||
      (resumed_row && resume->row_missing_recorded)) {
    written = std::string("W.npy b.npy ") + (params.has_visible_bias() ? "a.npy " : "") +
              (state.vW.empty() ? "" : "vW.npy vb.npy ") + (state.va.empty() ? "" : "va.npy ") +
              (state.n_chains > 0 ? "chains.npy " : "") + "weights.png metrics.csv run.json";
  }
  std::printf("wrote %s: %s\n", out_dir.string().c_str(), written.c_str());
}

}  // namespace rbm
