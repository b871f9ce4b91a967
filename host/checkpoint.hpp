// Checkpoints in a run directory: W.npy, b.npy, [a.npy] and run.json, whose "checkpoint" entry
// names the iteration and the SHA-256 of each parameter file, so that a loader can tell that the
// files on disk belong together. A minibatch run adds its training state (host/minibatch.hpp):
// vW.npy, vb.npy, va.npy (momentum velocities) and chains.npy (PCD chains), each once it exists.
// The RNG is counter-based, so its position is the iteration: nothing to store for it.
//
// A checkpoint is written in three steps, each file atomically (host/atomic_file.hpp):
//   1. stage:   each parameter file is written as NAME.next (W.npy.next, ...);
//   2. commit:  run.json, naming the iteration and the SHA-256 of each staged file;
//   3. publish: each NAME.next is renamed over NAME.
// Wherever a kill lands, run.json and either NAME or NAME.next agree: before the commit run.json
// still names the previous files, which are still in place; after it each file is either
// published already or still staged. load_checkpoint takes whichever matches.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/errors.hpp"
#include "host/minibatch.hpp"
#include "host/model.hpp"
#include "host/trainer.hpp"

namespace rbm {

// The files of a run directory that its training writes and owns: run.json, metrics.csv,
// weights.png and every checkpoint file (W.npy, b.npy, a.npy, vW.npy, vb.npy, va.npy, chains.npy).
const std::vector<std::string>& run_file_names();
// Whether `file_name` (a name, no directory) is one of run_file_names() or its staged NAME.next.
bool is_run_file_name(const std::string& file_name);

// Whether `dir` holds what a new run writes before its first checkpoint, and no more: no run.json,
// and a metrics.csv of a header and no row. Such a run was stopped (killed, or its disk full)
// before run.json existed; nothing of it can be resumed, and a new run may start over it.
bool stopped_before_its_first_checkpoint(const std::filesystem::path& dir);

// run.json is JSON text, which holds valid UTF-8 only (RFC 8259): whether `text` is (no overlong
// forms, no surrogates, nothing past U+10FFFF). A path that is not cannot be recorded there.
bool is_valid_utf8(std::string_view text);

// A file of a checkpoint that does not match the SHA-256 run.json records for it (nor does its
// NAME.next): another checkpoint's file, an edited one, or damage.
struct ChecksumMismatch : InputError {
  using InputError::InputError;
};

// One file of a checkpoint: a file name in the run directory (NAME.npy) and its bytes.
struct CheckpointFile {
  std::string name;
  std::string bytes;
};

// W.npy, b.npy and, with visible biases, a.npy, encoded as write_npy writes them.
std::vector<CheckpointFile> param_files(const Params& params);

// The non-empty parts of a minibatch trainer's state: vW.npy (d, H), vb.npy (H), va.npy (d) as
// float32, chains.npy (n_chains, d) as uint8 0/1.
std::vector<CheckpointFile> training_state_files(const TrainingState& state);

// A checkpoint that could not be written (a full disk), with the file and the reason in what().
// committed: run.json names it already, and only its publish failed part way (load_checkpoint
// takes the files left as NAME.next); else the checkpoint before it stays as it was.
struct CheckpointWriteError : InputError {
  CheckpointWriteError(const std::string& what, bool committed_)
      : InputError(what), committed(committed_) {}
  bool committed;
};

// Writes `files` (at least param_files(); a trainer with more state adds its own .npy files) as
// the checkpoint at `iteration`; `run` is run.json's content, to which this adds the
// "checkpoint" entry. Throws CheckpointWriteError naming the file when a write fails.
void write_checkpoint(const std::filesystem::path& dir, int64_t iteration,
                      const std::vector<CheckpointFile>& files, nlohmann::json run);

struct Checkpoint {
  nlohmann::json run;  // run.json, as read
  int64_t iteration = 0;
  Params params;                      // from W.npy, b.npy, [a.npy]; hidden type from run.json
  TrainingState state;                // from vW.npy, vb.npy, va.npy, chains.npy where present
  std::vector<CheckpointFile> files;  // every file of the checkpoint, checked against its SHA-256
  std::vector<std::string> staged;    // files found only as NAME.next (a publish was cut short)
};

// Called with each path load_checkpoint is about to read. Tests run a writer's steps in it, to
// interleave them with a reader's reads deterministically; empty otherwise.
using BeforeRead = std::function<void(const std::filesystem::path&)>;

// Reads run.json and the files it names and checks that they belong together (SHA-256 of each
// file, one iteration), and that W.npy, b.npy, [a.npy] and the training state's files parse,
// have consistent shapes and hold finite values (chains: 0 or 1). Reads only. Throws InputError
// naming the file and the problem. Each file is looked for as NAME, then NAME.next, then NAME
// again (a publish may rename NAME.next over NAME between the first two looks), so a checkpoint
// committed while this reads does not make it fail.
Checkpoint load_checkpoint(const std::filesystem::path& dir, const BeforeRead& before_read = {});

// load_checkpoint for a reader of a run that may be training meanwhile (eval, sample). Two
// checkpoints committed while the files are read leave files that belong to none: run.json has
// then changed since it was read, and this reads again, up to kLiveReadAttempts times in all.
// Damage leaves run.json as it was, and is refused at once.
inline constexpr int kLiveReadAttempts = 5;
Checkpoint load_newest_checkpoint(const std::filesystem::path& dir,
                                  const BeforeRead& before_read = {});

// Finishes what a killed run left: publishes the checkpoint's staged files and removes stale
// NAME.next and temporary files (another .npy's only when the process that wrote it is gone: a
// `sample --out` may be writing it), so that the next checkpoint starts from a clean directory.
void tidy_run_directory(const std::filesystem::path& dir, const Checkpoint& checkpoint);
// An integer of run.json within int64, written as one or as a real with no fraction (5.0); nullopt
// for anything else (8.5 is not read as 8, nor 2^64 as -2^63, nor "5" or true as 5 or 1).
std::optional<int64_t> json_int64(const nlohmann::json& node);

// Its second half alone, for a new run in a directory that a run stopped before its first
// checkpoint left (host/trainer.cpp): that run's NAME.next and temporary files are gone with it.
// The caller holds the directory's lock.
void remove_stale_files(const std::filesystem::path& dir);

// The options to continue the run in `dir` (the recipe, data selection and schedule it was
// started with; out_dir = dir; resume = the checkpoint), after tidy_run_directory. `iters`
// extends the run (at least the checkpoint's iteration); `data_dir` points at the same data in
// another place (its checksum must match). Throws InputError starting "--resume DIR: ".
TrainOptions resume_options(const std::filesystem::path& dir, std::optional<int64_t> iters,
                            std::optional<std::filesystem::path> data_dir);

}  // namespace rbm
