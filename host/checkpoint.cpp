// Checkpoints: stage, commit, publish; loading and resuming (see checkpoint.hpp).
#include "host/checkpoint.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/errors.hpp"
#include "host/metrics.hpp"
#include "host/minibatch.hpp"
#include "host/npy.hpp"
#include "host/sha256.hpp"

namespace rbm {
namespace {

// metrics.csv's text as rbm wrote it, one newline after the last line: editors add or strip a
// final newline, or leave blank lines at the end (empty, or only spaces and tabs), and none of
// that edits a row. The last line with anything else is kept whole.
std::string metrics_csv_as_written(std::string text) {
  const size_t last_mark = text.find_last_not_of(" \t\n");
  if (last_mark == std::string::npos) return text.empty() ? text : "\n";
  const size_t line_end = text.find('\n', last_mark);
  if (line_end == std::string::npos) return text + '\n';
  text.resize(line_end + 1);
  return text;
}

const char* const kRunJson = "run.json";
const char* const kStagedSuffix = ".next";
constexpr int64_t kMaxUnits = 100'000;  // the CLI's bound on --hidden, and on d

std::filesystem::path staged(const std::filesystem::path& dir, const std::string& name) {
  return dir / (name + kStagedSuffix);
}

void rename_or_throw(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw InputError(to.string() + ": cannot rename " + from.string() +
                     " over it: " + std::strerror(errno));
  }
}

// Makes the renames of a publish durable. A failure here loses nothing that run.json does not
// already describe, so it is not worth stopping a run for.
void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// A plain file name in the run directory: letters, digits, '_', '-', '.', not starting with '.'.
bool valid_file_name(const std::string& name) {
  if (name.empty() || name.front() == '.' || name.size() > 64) return false;
  return name.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") ==
         std::string::npos;
}

}  // namespace

std::optional<int64_t> json_int64(const nlohmann::json& node) {
  if (node.is_number_float()) {
    const double value = node.get<double>();
    if (std::isfinite(value) && value == std::trunc(value) && value >= -0x1p63 && value < 0x1p63) {
      return static_cast<int64_t>(value);
    }
    return std::nullopt;
  }
  if (!node.is_number_integer() ||
      (node.is_number_unsigned() &&
       node.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})) {
    return std::nullopt;
  }
  return node.get<int64_t>();
}

namespace {

[[noreturn]] void bad_run_json(const std::filesystem::path& dir, const std::string& what) {
  throw InputError((dir / kRunJson).string() + ": " + what);
}

template <class T>
T field(const std::filesystem::path& dir, const nlohmann::json& object, const char* path_text,
        std::initializer_list<const char*> keys) {
  const nlohmann::json* node = &object;
  for (const char* key : keys) {
    if (!node->is_object() || !node->contains(key)) {
      bad_run_json(dir, std::string("no ") + path_text + " entry");
    }
    node = &(*node)[key];
  }
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (const std::optional<int64_t> value = json_int64(*node)) return static_cast<T>(*value);
  } else {
    try {
      return node->get<T>();
    } catch (const nlohmann::json::exception&) {
    }
  }
  bad_run_json(dir, std::string(path_text) + " has the wrong type: " + node->dump());
}

}  // namespace

std::vector<CheckpointFile> param_files(const Params& params) {
  std::vector<CheckpointFile> files;
  files.push_back({"W.npy", encode_npy("W.npy", params.W, {params.visible, params.hidden})});
  files.push_back({"b.npy", encode_npy("b.npy", params.b, {params.hidden})});
  if (params.has_visible_bias()) {
    files.push_back({"a.npy", encode_npy("a.npy", params.a, {params.visible})});
  }
  return files;
}

std::vector<CheckpointFile> training_state_files(const TrainingState& state) {
  std::vector<CheckpointFile> files;
  const int64_t n_weights = static_cast<int64_t>(state.vW.size());
  const int64_t H = static_cast<int64_t>(state.vb.size());
  if (!state.vW.empty()) {
    // vW has W's shape (d, H); vb is (H) and exists whenever vW does.
    if (H == 0 || n_weights % H != 0) {
      throw std::invalid_argument("training_state_files: vW and vb do not fit together");
    }
    files.push_back({"vW.npy", encode_npy("vW.npy", state.vW, {n_weights / H, H})});
    files.push_back({"vb.npy", encode_npy("vb.npy", state.vb, {H})});
  }
  if (!state.va.empty()) {
    files.push_back(
        {"va.npy", encode_npy("va.npy", state.va, {static_cast<int64_t>(state.va.size())})});
  }
  if (state.n_chains > 0) {
    const int64_t d = static_cast<int64_t>(state.chains.size()) / state.n_chains;
    files.push_back({"chains.npy", encode_npy_u8("chains.npy", state.chains, {state.n_chains, d})});
  }
  return files;
}

void write_checkpoint(const std::filesystem::path& dir, int64_t iteration,
                      const std::vector<CheckpointFile>& files, nlohmann::json run) {
  for (const CheckpointFile& file : files) {
    if (!valid_file_name(file.name)) {
      throw std::invalid_argument("write_checkpoint: bad file name '" + file.name + "'");
    }
  }
  bool committed = false;
  size_t staged_count = 0;
  try {
    nlohmann::json sums = nlohmann::json::object();
    for (const CheckpointFile& file : files) {  // 1. stage
      write_file_atomic(staged(dir, file.name), file.bytes);
      ++staged_count;
      sums[file.name] = sha256_hex(file.bytes);
    }
    run["checkpoint"] = {{"iteration", iteration}, {"sha256", sums}};
    StagedFile run_json(dir / kRunJson, run.dump(2) + "\n");  // 2. commit
    try {
      run_json.commit();
    } catch (const InputError&) {
      committed = run_json.in_place();  // renamed, and only the directory's sync failed
      throw;
    }
    committed = true;
    for (const CheckpointFile& file : files) {  // 3. publish
      rename_or_throw(staged(dir, file.name), dir / file.name);
    }
  } catch (const InputError& e) {
    // Not committed: run.json names the files of the checkpoint before, and this one's staged
    // files are of no use to anyone; on a full disk they would hold its space until a --resume
    // tidied them (a disk-full exploratory tester). Committed: they are the checkpoint.
    if (!committed) {
      std::error_code ignored;
      for (size_t i = 0; i < staged_count; ++i) {
        std::filesystem::remove(staged(dir, files[i].name), ignored);
      }
    }
    throw CheckpointWriteError(e.what(), committed);
  }
  sync_directory(dir);
}

Checkpoint load_checkpoint(const std::filesystem::path& dir, const BeforeRead& before_read) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    throw InputError(dir.string() + ": not a directory");
  }
  const auto read = [&](const std::filesystem::path& path) {
    if (before_read) before_read(path);
    return read_file_if_exists(path);
  };
  Checkpoint checkpoint;
  const std::optional<std::string> text = read(dir / kRunJson);
  if (!text) {
    throw InputError((dir / kRunJson).string() + ": cannot open: " + std::strerror(ENOENT));
  }
  try {
    checkpoint.run = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    bad_run_json(dir, std::string("not valid JSON: ") + e.what());
  }
  const nlohmann::json& run = checkpoint.run;
  if (!run.is_object() || !run.contains("checkpoint")) {
    bad_run_json(dir, "no \"checkpoint\" entry (written before checkpoints, or not by rbm)");
  }
  checkpoint.iteration =
      field<int64_t>(dir, run, "checkpoint.iteration", {"checkpoint", "iteration"});
  const auto iteration = field<int64_t>(dir, run, "iteration", {"iteration"});
  if (checkpoint.iteration < 0 || iteration != checkpoint.iteration) {
    bad_run_json(dir, "inconsistent iteration: checkpoint.iteration " +
                          std::to_string(checkpoint.iteration) + ", iteration " +
                          std::to_string(iteration));
  }
  const auto sums = field<nlohmann::json>(dir, run, "checkpoint.sha256", {"checkpoint", "sha256"});
  if (!sums.is_object()) bad_run_json(dir, "checkpoint.sha256 is not an object");
  for (const auto& [name, sum] : sums.items()) {
    if (!valid_file_name(name)) {
      bad_run_json(dir, "checkpoint.sha256 names a file '" + name + "' outside the directory");
    }
    if (!sum.is_string()) bad_run_json(dir, "checkpoint.sha256." + name + " is not a string");
  }

  // Each file as published, or as staged when the publish was cut short (or is yet to come), or
  // as published meanwhile: the publish renames NAME.next over NAME, so a NAME.next that is gone
  // by the second look is NAME by the third.
  for (const auto& [name, sum] : sums.items()) {
    const std::string expected = lowercase_hex(sum.get<std::string>());
    bool found = false, exists = false;
    for (const bool is_staged : {false, true, false}) {
      const std::filesystem::path path = is_staged ? staged(dir, name) : dir / name;
      std::optional<std::string> bytes = read(path);
      if (!bytes) continue;
      exists = true;
      if (sha256_hex(*bytes) != expected) continue;
      if (is_staged) checkpoint.staged.push_back(name);
      checkpoint.files.push_back({name, std::move(*bytes)});
      found = true;
      break;
    }
    if (!exists) {
      throw InputError((dir / name).string() + ": missing (nor is there " + name + kStagedSuffix +
                       "), though " + kRunJson + " records it as part of the checkpoint");
    }
    if (!found && !is_sha256_hex(expected)) {
      throw ChecksumMismatch((dir / name).string() + ": " + kRunJson + "'s checkpoint.sha256." +
                             name + " \"" + expected +
                             "\" is not a SHA-256 (64 hex digits), so no file matches it");
    }
    if (!found) {
      throw ChecksumMismatch((dir / name).string() + ": does not match the SHA-256 that " +
                             kRunJson + " records for it (nor does " + name + kStagedSuffix +
                             "): not the checkpoint's file, or damaged");
    }
  }
  const auto load = [&](const std::string& name, size_t rank) -> NpyArray {
    const std::filesystem::path path = dir / name;
    for (const CheckpointFile& file : checkpoint.files) {
      if (file.name != name) continue;
      NpyArray array = parse_npy(path, file.bytes);
      if (array.shape.size() != rank) {
        throw InputError(path.string() + ": " + std::to_string(array.shape.size()) +
                         "-D, expected " + (rank == 2 ? "2-D (d, H)" : "1-D"));
      }
      for (const int64_t dim : array.shape) {
        if (dim < 1 || dim > kMaxUnits) {
          throw InputError(path.string() + ": dimension " + std::to_string(dim) + " not in 1.." +
                           std::to_string(kMaxUnits));
        }
      }
      return array;
    }
    bad_run_json(dir, "checkpoint.sha256 lacks " + name);
  };
  const NpyArray W = load("W.npy", 2);
  Params& params = checkpoint.params;
  params.visible = static_cast<int>(W.shape[0]);
  params.hidden = static_cast<int>(W.shape[1]);
  params.W = W.data;
  params.b = load("b.npy", 1).data;
  if (sums.contains("a.npy")) params.a = load("a.npy", 1).data;
  try {
    check_shapes(params);
  } catch (const InputError& e) {
    throw InputError(dir.string() + ": " + e.what());
  }
  if (const std::optional<NonFiniteValue> bad = first_non_finite(params)) {
    throw InputError((dir / bad->file).string() + ": " + bad->where +
                     ": the checkpoint's parameters are not all finite");
  }
  if (run.contains("recipe") && !run["recipe"].is_object()) {
    bad_run_json(dir, "recipe is not an object");
  }
  if (run.contains("recipe") && run["recipe"].contains("hidden_type")) {
    const auto type = field<std::string>(dir, run, "recipe.hidden_type", {"recipe", "hidden_type"});
    if (type != "binary" && type != "ternary") {
      bad_run_json(dir, "recipe.hidden_type \"" + type + "\" is not binary or ternary");
    }
    params.hidden_type = parse_hidden_type(type);
  }

  // The training state of a minibatch run: each part, when present, must fit the parameters.
  TrainingState& state = checkpoint.state;
  const auto expect_length = [&](const std::string& name, const std::vector<float>& values,
                                 size_t n) {
    if (values.size() != n) {
      throw InputError((dir / name).string() + ": " + std::to_string(values.size()) +
                       " values, expected " + std::to_string(n) + " (the model's shape)");
    }
    if (!all_finite(values)) throw InputError((dir / name).string() + ": not all finite");
  };
  const size_t d = static_cast<size_t>(params.visible), H = static_cast<size_t>(params.hidden);
  if (sums.contains("vW.npy") != sums.contains("vb.npy")) {
    bad_run_json(dir, "checkpoint.sha256 names one of vW.npy and vb.npy without the other");
  }
  if (sums.contains("vW.npy")) {
    state.vW = load("vW.npy", 2).data;
    expect_length("vW.npy", state.vW, d * H);
    state.vb = load("vb.npy", 1).data;
    expect_length("vb.npy", state.vb, H);
  }
  if (sums.contains("va.npy")) {
    if (!params.has_visible_bias()) bad_run_json(dir, "va.npy without a.npy");
    state.va = load("va.npy", 1).data;
    expect_length("va.npy", state.va, d);
  }
  if (sums.contains("chains.npy")) {
    const std::filesystem::path path = dir / "chains.npy";
    const auto file = std::find_if(checkpoint.files.begin(), checkpoint.files.end(),
                                   [](const CheckpointFile& f) { return f.name == "chains.npy"; });
    NpyArrayU8 chains = parse_npy_u8(path, file->bytes);
    if (chains.shape.size() != 2 || chains.shape[0] < 1 ||
        chains.shape[1] != static_cast<int64_t>(d)) {
      throw InputError(path.string() + ": not (n_chains, " + std::to_string(d) + ")");
    }
    if (std::any_of(chains.data.begin(), chains.data.end(), [](uint8_t v) { return v > 1; })) {
      throw InputError(path.string() + ": a chain state is not 0 or 1");
    }
    state.n_chains = chains.shape[0];
    state.chains = std::move(chains.data);
  }
  return checkpoint;
}

Checkpoint load_newest_checkpoint(const std::filesystem::path& dir, const BeforeRead& before_read) {
  std::optional<std::string> record = read_file_if_exists(dir / kRunJson);
  for (int attempt = 1;; ++attempt) {
    try {
      return load_checkpoint(dir, before_read);
    } catch (const InputError& e) {
      std::optional<std::string> now = read_file_if_exists(dir / kRunJson);
      if (now == record) throw;  // the same checkpoint: damage, not a race with its run
      if (attempt == kLiveReadAttempts) {
        throw InputError(std::string(e.what()) + " (" + kRunJson + " changed during each of " +
                         std::to_string(kLiveReadAttempts) +
                         " reads: its run commits checkpoints faster than they can be read; try "
                         "again)");
      }
      record = std::move(now);
    }
  }
}

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> names = {kRunJson, "metrics.csv", "weights.png", "W.npy",
                                                 "b.npy",  "a.npy",       "vW.npy",      "vb.npy",
                                                 "va.npy", "chains.npy"};
  return names;
}

namespace {

bool is_listed_run_file(const std::string& name) {
  return std::find(run_file_names().begin(), run_file_names().end(), name) !=
         run_file_names().end();
}

}  // namespace

bool is_run_file_name(const std::string& file_name) {
  return is_listed_run_file(file_name.ends_with(kStagedSuffix)
                                ? file_name.substr(0, file_name.size() - std::strlen(kStagedSuffix))
                                : file_name);
}

bool stopped_before_its_first_checkpoint(const std::filesystem::path& dir) {
  std::error_code error;
  if (std::filesystem::exists(dir / kRunJson, error) || error) return false;
  if (std::filesystem::file_size(dir / "metrics.csv", error) > 4096 || error) return false;
  const std::string text = metrics_csv_as_written(read_file(dir / "metrics.csv"));
  return text == metrics_csv_header(false) || text == metrics_csv_header(true);
}

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = [&](size_t at) { return static_cast<unsigned char>(text[at]); };
    const unsigned lead = byte(i);
    // The sequence's length, and the range of its first continuation byte (which rules out the
    // overlong forms, the surrogates U+D800..U+DFFF and everything past U+10FFFF).
    size_t length = 1;
    unsigned low = 0x80, high = 0xBF;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    if (byte(i + 1) < low || byte(i + 1) > high) return false;
    for (size_t k = 2; k < length; ++k) {
      if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

namespace {

// Whether the process whose id ends `temporary_name` (.NAME.tmp.PID) is running: kill(pid, 0)
// finds it (or finds it but may not signal it). An id beyond pid_t is no process. A process that
// took a dead writer's id keeps its file until it ends too; a writer in another PID namespace
// looks gone.
bool process_alive(const std::string& temporary_name) {
  const std::string_view digits =
      std::string_view(temporary_name).substr(temporary_name.rfind('.') + 1);
  pid_t pid = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  if (error != std::errc() || end != digits.data() + digits.size()) return false;
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

}  // namespace

void tidy_run_directory(const std::filesystem::path& dir, const Checkpoint& checkpoint) {
  for (const std::string& name : checkpoint.staged) rename_or_throw(staged(dir, name), dir / name);
  remove_stale_files(dir);
}

void remove_stale_files(const std::filesystem::path& dir) {
  // Staged files of a checkpoint that was never committed (NAME.next), and temporary files of
  // writers that were killed (.NAME.tmp.PID, host/atomic_file.cpp).
  const auto stale = [](const std::string& file) {
    const auto ends_in_pid = [&](const std::string& prefix_end) {
      const size_t at = file.rfind(prefix_end);
      return at != std::string::npos && at + prefix_end.size() < file.size() &&
             file.find_first_not_of("0123456789", at + prefix_end.size()) == std::string::npos;
    };
    const auto is_ours = [](const std::string& name) {  // a run's file, or any .npy we could write
      return is_listed_run_file(name) || (valid_file_name(name) && name.ends_with(".npy"));
    };
    if (file.ends_with(kStagedSuffix)) {
      return is_ours(file.substr(0, file.size() - std::strlen(kStagedSuffix)));
    }
    if (file.starts_with(".") && ends_in_pid(".tmp.")) {
      std::string target = file.substr(1, file.rfind(".tmp.") - 1);
      if (target.ends_with(kStagedSuffix)) {
        target.resize(target.size() - std::strlen(kStagedSuffix));
      }
      // The run's own files have no other writer (the run holds the directory's lock); another
      // .npy may be a `sample --out` still being written, unnamed or not (host/atomic_file.hpp):
      // only a writer that is gone has left it.
      return is_listed_run_file(target) || (is_ours(target) && !process_alive(file));
    }
    return false;
  };
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (stale(entry.path().filename().string())) std::filesystem::remove(entry.path(), error);
  }
  sync_directory(dir);
}

namespace {

// metrics.csv's header and its rows up to `iteration` (rows after the checkpoint are computed
// again by the resumed run), and the iteration of the last of them (0: none). A run logs at every
// multiple of log_every and at its end (an extended run's earlier end is a row between two
// multiples), so every multiple below `iteration` has its row; the one at `iteration` may lack it
// (a signal stopped that log point: ResumeFrom::row_missing).
struct MetricsUpTo {
  std::string text;
  int64_t last_row = 0;
  bool last_row_has_eval = false;  // its log_z field holds a value (--eval-every's columns)
  size_t last_row_at = 0;          // where the last row starts in text
};
// Throws when a multiple of log_every lies strictly between two consecutive rows `from` and `to`
// (from = 0: before the first row): its row is missing, so the file was edited or is another's.
void require_log_points_between(const std::filesystem::path& path, int64_t from, int64_t to,
                                int64_t log_every, const std::string& where) {
  const int64_t next_point = (from / log_every + 1) * log_every;
  if (next_point < to) {
    throw InputError(path.string() + ": " + where + ", but the row of iteration " +
                     std::to_string(next_point) + " (a multiple of log_every " +
                     std::to_string(log_every) +
                     ") is missing: an edited or foreign file, whose curve would skip it");
  }
}

// Throws when a field after the iteration is neither empty (a metric the run does not compute)
// nor a finite number, or log_z_method's is not a name training writes (host/train_eval.cpp):
// the resumed file would carry it, and scripts/plot would refuse it.
void require_metrics_values(const std::filesystem::path& path, int line,
                            const std::vector<std::string>& columns, std::string_view row) {
  const std::vector<std::string> fields = split_fields(row);
  for (size_t k = 1; k < fields.size(); ++k) {
    const std::string& field = fields[k];
    if (field.empty()) continue;
    bool ok = false;
    if (columns[k] == "log_z_method") {
      ok = field == "exact" || field == "ais" || field == "ais-below-bound";
    } else {
      double value = 0.0;
      const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
      ok = ec == std::errc() && end == field.data() + field.size() && std::isfinite(value);
    }
    if (!ok) {
      throw InputError(
          path.string() + ": line " + std::to_string(line) + "'s " + columns[k] + " is '" + field +
          "', not " +
          (columns[k] == "log_z_method" ? "exact, ais or ais-below-bound" : "a finite number") +
          ": an edited or foreign file");
    }
  }
}

MetricsUpTo metrics_up_to(const std::filesystem::path& dir, int64_t iteration, int64_t log_every) {
  const std::filesystem::path path = dir / "metrics.csv";
  // The resumed run appends to its rows: without them its curves would start mid-run.
  std::error_code error;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, error))) {
    throw InputError(path.string() +
                     ": missing: it holds the run's metrics up to the checkpoint, which the "
                     "resumed run continues; put it back (a copy of the run directory has it)");
  }
  const std::string file = metrics_csv_as_written(read_file(path));
  if (file.find('\r') != std::string::npos) {
    throw InputError(path.string() +
                     ": has carriage returns (CRLF line endings?), which rbm never writes; "
                     "remove them (sed -i 's/\\r$//' FILE) if the file is otherwise this run's");
  }
  const std::optional<std::string> current = metrics_csv_in_current_columns(file);
  if (!current) throw InputError(path.string() + ": not rbm's metrics header");
  const std::string& text = *current;
  const std::string header = text.substr(0, text.find('\n') + 1);
  MetricsUpTo kept{header, 0};
  const std::vector<std::string> columns =
      split_fields(std::string_view(header).substr(0, header.size() - 1));
  const auto header_commas = std::count(header.begin(), header.end(), ',');  // every row's
  int line = 1;
  int64_t previous_iteration = 0;  // rows start after iteration 0
  for (size_t pos = header.size(); pos < text.size();) {
    ++line;
    const size_t end = text.find('\n', pos);
    const std::string_view row(text.data() + pos,
                               (end == std::string::npos ? text.size() : end) - pos);
    int64_t row_iteration = -1;
    const auto [stop, ec] = std::from_chars(row.data(), row.data() + row.size(), row_iteration);
    if (end == std::string::npos || ec != std::errc() || stop == row.data() + row.size() ||
        *stop != ',' || std::count(row.begin(), row.end(), ',') != header_commas) {
      throw InputError(path.string() + ": line " + std::to_string(line) + " is not a metrics row");
    }
    // Rows come at increasing iterations (a run logs each point once): a duplicate or a step back
    // is an edited or foreign file, whose curve would double back.
    if (row_iteration <= previous_iteration) {
      throw InputError(path.string() + ": line " + std::to_string(line) + "'s iteration " +
                       std::to_string(row_iteration) + " does not come after the previous row's " +
                       std::to_string(previous_iteration));
    }
    if (row_iteration <= iteration) {
      const std::string after =
          previous_iteration == 0 ? "the header" : std::to_string(previous_iteration);
      require_log_points_between(path, previous_iteration, row_iteration, log_every,
                                 "line " + std::to_string(line) + "'s iteration " +
                                     std::to_string(row_iteration) + " follows " + after);
      kept.last_row_at = kept.text.size();
      (kept.text += row) += '\n';
      kept.last_row = row_iteration;
    }
    require_metrics_values(path, line, columns, row);
    previous_iteration = row_iteration;
    pos = end + 1;
  }
  const std::string last_row =
      kept.last_row == 0 ? "there is no row before it"
                         : "the last row before it is at " + std::to_string(kept.last_row);
  require_log_points_between(
      path, kept.last_row, iteration, log_every,
      "the checkpoint is at iteration " + std::to_string(iteration) + " and " + last_row);
  // Whether the last row kept has --eval-every's log Z (only it is asked about).
  const auto log_z = std::find(columns.begin(), columns.end(), "log_z");
  if (kept.last_row > 0 && log_z != columns.end()) {
    const std::string_view row(kept.text.data() + kept.last_row_at,
                               kept.text.size() - kept.last_row_at - 1);  // without its newline
    kept.last_row_has_eval =
        !split_fields(row)[static_cast<size_t>(log_z - columns.begin())].empty();
  }
  return kept;
}

template <class T>
void require_field(const std::filesystem::path& dir, bool ok, const char* name, T value,
                   const char* rule) {
  if (ok) return;
  std::string text = std::to_string(value);
  if constexpr (std::is_floating_point_v<T>) {
    char shortest[32];
    std::snprintf(shortest, sizeof shortest, "%.9g", static_cast<double>(value));
    text = shortest;
  }
  bad_run_json(dir, std::string(name) + " " + text + " is not " + rule);
}

}  // namespace

TrainOptions resume_options(const std::filesystem::path& dir, std::optional<int64_t> iters,
                            std::optional<std::filesystem::path> data_dir) {
  try {
    // Before anything is read: the tidying below renames files, and training writes them.
    auto lock = std::make_shared<const DirectoryLock>(dir);
    if (stopped_before_its_first_checkpoint(dir)) {
      throw InputError(std::string("no ") + kRunJson +
                       ": its run stopped before its first checkpoint, so there is nothing to "
                       "continue; start a new run with --out " +
                       dir.string());
    }
    Checkpoint checkpoint = load_checkpoint(dir);
    const nlohmann::json& run = checkpoint.run;
    const Params& params = checkpoint.params;
    TrainOptions options;
    Recipe& r = options.recipe;
    const auto iters_recorded = field<int64_t>(dir, run, "recipe.iters", {"recipe", "iters"});
    const auto hidden = field<int64_t>(dir, run, "recipe.hidden", {"recipe", "hidden"});
    const auto k = field<int64_t>(dir, run, "recipe.k", {"recipe", "k"});
    const auto seed = field<int64_t>(dir, run, "recipe.seed", {"recipe", "seed"});
    const auto lr = field<double>(dir, run, "recipe.lr", {"recipe", "lr"});
    const auto init_std = field<double>(dir, run, "recipe.init_std", {"recipe", "init_std"});
    r.visible_bias = field<bool>(dir, run, "recipe.visible_bias", {"recipe", "visible_bias"});
    require_field(dir, iters_recorded >= checkpoint.iteration && iters_recorded <= kMaxIters,
                  "recipe.iters", iters_recorded, "between the checkpoint's iteration and 1e12");
    require_field(dir, hidden == params.hidden, "recipe.hidden", hidden, "W.npy's H");
    require_field(dir, k >= 1 && k <= kMaxUnits, "recipe.k", k, "in 1..100000");
    require_field(dir, seed >= 0 && seed <= 0xFFFFFFFFll, "recipe.seed", seed, "in 0..4294967295");
    // Judged as the float it becomes, as --lr is: 1e-300 would train with a rate of 0.
    require_field(dir, std::isfinite(lr) && lr <= 1e6 && static_cast<float>(lr) > 0.0f, "recipe.lr",
                  lr, "in (0, 1e6] as a float");
    require_field(dir, std::isfinite(init_std) && init_std >= 0.0 && init_std <= 1e3,
                  "recipe.init_std", init_std, "in [0, 1000]");
    if (r.visible_bias != params.has_visible_bias()) {
      bad_run_json(dir, std::string("recipe.visible_bias is ") +
                            (r.visible_bias ? "true" : "false") + " but the checkpoint " +
                            (params.has_visible_bias() ? "has" : "lacks") + " a.npy");
    }
    r.iters = iters_recorded;
    r.hidden = static_cast<int>(hidden);
    r.k = static_cast<int>(k);
    r.seed = static_cast<uint32_t>(seed);
    r.lr = static_cast<float>(lr);
    r.init_std = static_cast<float>(init_std);
    r.hidden_type = params.hidden_type;
    // Minibatch CD / PCD (host/minibatch.hpp); runs recorded before it existed have none of these
    // and are single-sample. run_training checks them against the data (check_minibatch_recipe).
    const nlohmann::json& recorded = run["recipe"];
    if (recorded.contains("batch")) {
      const auto batch = field<int64_t>(dir, run, "recipe.batch", {"recipe", "batch"});
      const auto chains = field<int64_t>(dir, run, "recipe.chains", {"recipe", "chains"});
      const auto epochs = field<int64_t>(dir, run, "recipe.epochs", {"recipe", "epochs"});
      const auto momentum = field<double>(dir, run, "recipe.momentum", {"recipe", "momentum"});
      const auto decay = field<double>(dir, run, "recipe.weight_decay", {"recipe", "weight_decay"});
      const auto lr_decay = field<std::string>(dir, run, "recipe.lr_decay", {"recipe", "lr_decay"});
      require_field(dir, batch >= 1 && batch <= 1'000'000, "recipe.batch", batch, "in 1..1000000");
      require_field(dir, chains >= 0 && chains <= 100'000'000, "recipe.chains", chains,
                    "in 0..1e8");
      require_field(dir, epochs >= 0 && epochs <= 1'000'000, "recipe.epochs", epochs,
                    "in 0..1000000");
      require_field(dir, std::isfinite(momentum) && momentum >= 0.0 && momentum < 1.0,
                    "recipe.momentum", momentum, "in [0, 1)");
      require_field(dir, std::isfinite(decay) && decay >= 0.0 && decay <= kMaxWeightDecay,
                    "recipe.weight_decay", decay, "in [0, 1000]");
      if (lr_decay != "none" && lr_decay != "linear") {
        bad_run_json(dir, "recipe.lr_decay \"" + lr_decay + "\" is not none or linear");
      }
      r.batch = static_cast<int>(batch);
      r.pcd = field<bool>(dir, run, "recipe.pcd", {"recipe", "pcd"});
      r.chains = chains;
      r.epochs = epochs;
      r.momentum = static_cast<float>(momentum);
      r.weight_decay = static_cast<float>(decay);
      r.lr_decay = lr_decay == "linear" ? LrDecay::linear : LrDecay::none;
    }
    // The checkpoint's state must be the recipe's: chains only with PCD (set_training_state checks
    // the shapes against the model); velocities without momentum are dropped (resumable_state).
    if (checkpoint.state.n_chains > 0 && !r.pcd) {
      bad_run_json(dir, "chains.npy without recipe.pcd");
    }
    if (r.chains > 0 && !r.pcd) bad_run_json(dir, "recipe.chains without recipe.pcd");
    // The trainer writes the algorithm its recipe selects. A minibatch one keeps the run on that
    // path (Recipe::minibatch: an --epochs run extended with --iters records epochs 0); one that
    // the recipe does not select means a recipe edited by hand, which would switch the run to
    // the other path from the resume on.
    if (run.contains("algorithm")) {
      const auto algorithm = field<std::string>(dir, run, "algorithm", {"algorithm"});
      r.minibatch = algorithm != "cd";
      const std::string selected = algorithm_name(r);
      if (algorithm != selected) {
        bad_run_json(dir, "algorithm \"" + algorithm + "\" is not the one its recipe selects (\"" +
                              selected + "\")");
      }
    }
    if (checkpoint.state.n_chains > 0 && r.chains > 0 && checkpoint.state.n_chains != r.chains) {
      throw InputError((dir / "chains.npy").string() + ": " +
                       std::to_string(checkpoint.state.n_chains) + " chains, run.json's " +
                       "recipe.chains " + std::to_string(r.chains));
    }
    // The RNG's record (the generator is counter-based: its position is the iteration) must be
    // this run's: another seed or position means a run.json edited or from elsewhere.
    if (run.contains("rng")) {
      const auto rng_seed = field<int64_t>(dir, run, "rng.seed", {"rng", "seed"});
      require_field(dir, rng_seed == seed, "rng.seed", rng_seed, "recipe.seed");
      // next_iteration; next_stream in run directories of earlier versions.
      const bool earlier = run["rng"].is_object() && !run["rng"].contains("next_iteration") &&
                           run["rng"].contains("next_stream");
      const char* name = earlier ? "next_stream" : "next_iteration";
      const std::string path = std::string("rng.") + name;
      const auto next = field<int64_t>(dir, run, path.c_str(), {"rng", name});
      require_field(dir, next == checkpoint.iteration, path.c_str(), next,
                    "the checkpoint's iteration");
    }
    if (iters) {
      if (*iters < checkpoint.iteration) {
        throw InputError("--iters " + std::to_string(*iters) +
                         " is below the checkpoint's iteration " +
                         std::to_string(checkpoint.iteration));
      }
      // lr (U - u) / U depends on the run's length U: another end would give the updates still
      // to come a schedule that the updates already made did not follow, and run.json could not
      // record the run that was trained.
      if (r.lr_decay == LrDecay::linear && *iters != iters_recorded) {
        throw InputError("--iters " + std::to_string(*iters) +
                         ": the run's learning rate falls linearly to 0 over its " +
                         std::to_string(iters_recorded) +
                         " updates (--lr-decay linear), and another end would change that "
                         "schedule part way; resume it without --iters, or start a new run");
      }
      r.iters = *iters;
      // --iters counts updates; the data order is the same (host/minibatch.hpp), and so is the
      // path, which epochs alone may have selected.
      r.minibatch = uses_minibatch(r);
      r.epochs = 0;
    }

    options.data_dir =
        data_dir ? *data_dir
                 : std::filesystem::path(field<std::string>(dir, run, "data.dir", {"data", "dir"}));
    // The recorded directory gone (moved, deleted): say it is the one run.json records, and that
    // --data takes the same images from elsewhere (the fetch hint alone read as a new download).
    std::error_code data_error;
    if (!data_dir && !std::filesystem::exists(options.data_dir, data_error) && !data_error) {
      // Earlier versions recorded the path as typed: a relative one is taken from here.
      const std::string relative = options.data_dir.is_relative()
                                       ? " (a relative path, taken from the working directory)"
                                       : "";
      throw InputError((dir / kRunJson).string() + " records the run's images in " +
                       options.data_dir.string() + relative +
                       ", which does not exist now: give --data DIR, a directory holding the "
                       "same images (their SHA-256 is checked)");
    }
    const auto digit = field<nlohmann::json>(dir, run, "data.digit", {"data", "digit"});
    if (digit == "all") {
      options.digit.reset();
    } else if (digit.is_number_integer() && digit.get<int64_t>() >= 0 &&
               digit.get<int64_t>() <= 9) {
      options.digit = digit.get<int>();
    } else {
      bad_run_json(dir, "data.digit " + digit.dump() + " is not 0..9 or \"all\"");
    }
    const auto split = field<std::string>(dir, run, "data.split", {"data", "split"});
    if (split != "all" && split != "train" && split != "test") {
      bad_run_json(dir, "data.split \"" + split + "\" is not all, train or test");
    }
    options.split = parse_split(split);
    options.log_every = field<int64_t>(dir, run, "schedule.log_every", {"schedule", "log_every"});
    options.checkpoint_every =
        field<int64_t>(dir, run, "schedule.checkpoint_every", {"schedule", "checkpoint_every"});
    require_field(dir, options.log_every >= 1 && options.log_every <= kMaxIters,
                  "schedule.log_every", options.log_every, "in 1..1e12");
    require_field(dir, options.checkpoint_every >= 1 && options.checkpoint_every <= kMaxIters,
                  "schedule.checkpoint_every", options.checkpoint_every, "in 1..1e12");
    // Runs recorded before `train --eval-every` existed have no eval_every: none (the default).
    if (run["schedule"].contains("eval_every")) {
      options.eval_every =
          field<int64_t>(dir, run, "schedule.eval_every", {"schedule", "eval_every"});
    }
    require_field(dir, options.eval_every >= 0 && options.eval_every % options.log_every == 0,
                  "schedule.eval_every", options.eval_every, "0 or a multiple of log_every");
    options.out_dir = dir;

    ResumeFrom resume;
    resume.iteration = checkpoint.iteration;
    resume.train_seconds = field<double>(dir, run, "train_seconds", {"train_seconds"});
    resume.data_sha256 =
        lowercase_hex(field<std::string>(dir, run, "data.sha256", {"data", "sha256"}));
    if (run["data"].contains("heldout_sha256")) {
      resume.heldout_sha256 = lowercase_hex(
          field<std::string>(dir, run, "data.heldout_sha256", {"data", "heldout_sha256"}));
    }
    MetricsUpTo metrics = metrics_up_to(dir, checkpoint.iteration, options.log_every);
    resume.metrics_csv = std::move(metrics.text);
    // A signal during a log point's metrics writes the checkpoint at that point without its row
    // (host/trainer.cpp). The run's log points are the multiples of log_every and its end, as the
    // checkpoint recorded it (iters_recorded; --iters may move the end of the resumed run, not of
    // the one that stopped); iteration 0 has no row.
    const int64_t t = checkpoint.iteration;
    const auto point_of = [&](int64_t every) {
      return every > 0 && t > 0 && (t % every == 0 || t == iters_recorded);
    };
    resume.row_missing = point_of(options.log_every) && metrics.last_row != t;
    resume.row_with_eval = point_of(options.eval_every);
    // A resumed run stopped again in that row wrote the checkpoint again with its own --iters,
    // which may have moved the end; it recorded the row as missing instead (host/trainer.cpp).
    if (run.contains("metrics_row_missing")) {
      resume.row_missing_recorded = true;
      resume.row_missing = metrics.last_row != t;
      resume.row_with_eval =
          field<bool>(dir, run, "metrics_row_missing.eval", {"metrics_row_missing", "eval"});
    }
    // --iters at the checkpoint's own iteration: the run ends there, a log point and, with
    // --eval-every, an eval point (the end always is), as an uninterrupted run of that length.
    if (iters && *iters == t && t != iters_recorded) {
      resume.ends_here = true;
      resume.row_missing = metrics.last_row != t;
      resume.row_with_eval = resume.row_with_eval || options.eval_every > 0;
    }
    // A row at the point that lacks the eval the point needs (logged when the point was not the
    // end, or left by a kill before its row was computed again) is computed again, with it.
    if (resume.row_with_eval && metrics.last_row == t && !metrics.last_row_has_eval) {
      resume.metrics_csv.resize(metrics.last_row_at);
      resume.row_missing = true;
    }
    tidy_run_directory(dir, checkpoint);
    resume.params = std::move(checkpoint.params);
    resume.state = resumable_state(r, std::move(checkpoint.state));
    resume.lock = std::move(lock);
    options.resume = std::move(resume);
    return options;
  } catch (const InputError& e) {
    throw InputError("--resume " + dir.string() + ": " + e.what());
  }
}

}  // namespace rbm
