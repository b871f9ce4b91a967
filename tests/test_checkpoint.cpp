// Checkpoints in-process (host/checkpoint.hpp): what is written loads back; every state a kill
// can leave between the steps of a write loads as the old or the new checkpoint; damaged sets
// are refused with the file named; and the training loop stops on a non-finite parameter or
// metric before writing it, keeping the last good checkpoint.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/backend.hpp"
#include "host/checkpoint.hpp"
#include "host/errors.hpp"
#include "host/metrics.hpp"
#include "host/model_io.hpp"
#include "host/npy.hpp"
#include "host/sha256.hpp"
#include "host/signals.hpp"
#include "host/trainer.hpp"
#include "tests/checkpoint_util.hpp"
#include "tests/forwarding_backend.hpp"
#include "tests/seccomp_filter.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

using test::TempDir;

// A small model whose values depend on `seed`, with or without visible biases.
Params small_params(float seed, bool visible_bias) {
  Params p;
  p.visible = 6;
  p.hidden = 3;
  for (int i = 0; i < 18; ++i) p.W.push_back(seed + 0.25f * static_cast<float>(i));
  p.b = {seed, -seed, 0.5f};
  if (visible_bias) p.a = {1, 2, 3, 4, 5, seed};
  return p;
}

nlohmann::json run_at(int64_t iteration) { return {{"iteration", iteration}, {"note", "test"}}; }

void expect_same(const Params& a, const Params& b) {
  EXPECT_EQ(a.visible, b.visible);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.W, b.W);
  EXPECT_EQ(a.b, b.b);
  EXPECT_EQ(a.a, b.a);
}

bool on_disk(const std::filesystem::path& path) { return std::filesystem::exists(path); }

TEST(Metrics, TheProgressLineWritesHugeValuesWithAnExponent) {
  MetricsRow row;
  row.recon_error_train = 0.11914;
  row.free_energy_train = -162.484;
  row.pll_train = -322.756;
  EXPECT_EQ(format_metrics(row), "recon 0.1191 F(train) -162.48 PLL(train) -322.76");
  // A diverging run (exploratory tester: "F(train) -6098082763745714705372342000359047168.00").
  row.free_energy_train = -6.0980827637457147e36;
  row.pll_train = -999999999.994;
  row.free_energy_heldout = 1e9;
  row.pll_heldout = -std::numeric_limits<double>::infinity();
  // A NaN of either sign (x86's inf - inf has the sign bit set) is "nan", as eval writes it.
  const double negative_nan = -std::numeric_limits<double>::quiet_NaN();
  ASSERT_TRUE(std::signbit(negative_nan));
  row.eval = EvalMetrics{9.5401984203278509e37, "ais", -12345678.9, negative_nan};
  EXPECT_EQ(format_metrics(row),
            "recon 0.1191 F(train) -6.09808276e+36 PLL(train) -999999999.99 F(heldout) 1e+09 "
            "PLL(heldout) -inf log Z 9.54019842e+37 (ais) log p(train) -12345678.90 "
            "log p(heldout) nan");
  EXPECT_EQ(format_number(-999999999.994, 2), "-999999999.99");
  EXPECT_EQ(format_number(0.1, -1), "0.1");
}

// metrics.csv keeps free energies and log-likelihoods to 9 significant digits (a gap of a few
// nats between F(heldout) and F(train) from 6-digit values would keep two decimals), the
// reconstruction errors to 6.
TEST(MetricsCsv, FreeEnergiesKeepNineDigits) {
  MetricsRow row;
  row.iteration = 5000;
  row.seconds = 1.25;
  row.recon_error_train = 0.0812345678;
  row.recon_error_heldout = 0.0912345678;
  row.free_energy_train = -162.48412345;
  row.free_energy_heldout = -158.91234567;
  row.pll_train = -75.123456789;
  row.pll_heldout = -80.123456789;
  EXPECT_EQ(metrics_csv_line(row),
            "5000,1.2500,0.0812346,0.0912346,-162.484123,-158.912346,-75.1234568,-80.1234568\n");
  row.recon_error_heldout.reset();
  row.free_energy_heldout.reset();
  row.pll_heldout.reset();
  EXPECT_EQ(metrics_csv_line(row), "5000,1.2500,0.0812346,,-162.484123,,-75.1234568,\n");
}

// The UTF-8 that JSON text may hold (RFC 3629's table), and the byte sequences it may not.
TEST(Checkpoint, ValidUtf8IsWhatJsonTextMayHold) {
  for (const char* valid : {"", "plain/path", "caf\xc3\xa9", "\xe2\x82\xac", "\xed\x9f\xbf",
                            "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_TRUE(is_valid_utf8(valid)) << valid;
    EXPECT_NO_THROW((void)nlohmann::json(std::string(valid)).dump()) << valid;
  }
  for (const char* invalid : {"\xff", "bad\xffname", "\x80", "\xc0\xaf", "\xc1\xbf", "\xc3",
                              "\xe0\x9f\xbf", "\xed\xa0\x80", "\xe2\x82", "\xf0\x8f\xbf\xbf",
                              "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x28\xa1"}) {
    EXPECT_FALSE(is_valid_utf8(invalid)) << invalid;
    EXPECT_THROW((void)nlohmann::json(std::string(invalid)).dump(), nlohmann::json::type_error)
        << invalid;
  }
}

TEST(Checkpoint, WritesThenLoadsTheSameParameters) {
  TempDir dir;
  const Params params = small_params(1.5f, true);
  write_checkpoint(dir.path(), 7, param_files(params), run_at(7));
  const Checkpoint checkpoint = load_checkpoint(dir.path());
  EXPECT_EQ(checkpoint.iteration, 7);
  expect_same(checkpoint.params, params);
  EXPECT_TRUE(checkpoint.staged.empty());
  EXPECT_EQ(checkpoint.run["note"], "test");
  // The files are plain .npy files (numpy.load reads them) whose checksums run.json records.
  EXPECT_EQ(read_npy(dir / "W.npy").data, params.W);
  const nlohmann::json run = test::read_json(dir / "run.json");
  for (const char* name : {"W.npy", "b.npy", "a.npy"}) {
    EXPECT_EQ(run["checkpoint"]["sha256"][name], sha256_hex(read_file(dir / name))) << name;
    EXPECT_FALSE(on_disk(dir / (std::string(name) + ".next"))) << name;
  }
  EXPECT_EQ(run["checkpoint"]["iteration"], 7);
}

// The README's exception to writing through links: a checkpoint's parameter files are staged in
// the run directory and renamed into place together, so a link among them becomes the file (its
// target keeps the old values: an exploratory tester's finding, now documented), while run.json is
// written through as every other output is.
TEST(Checkpoint, ALinkedParameterFileIsReplacedAndALinkedRunJsonWrittenThrough) {
  TempDir dir, elsewhere;
  const Params old_params = small_params(1.5f, true), new_params = small_params(-0.5f, true);
  write_checkpoint(elsewhere.path(), 7, param_files(old_params), run_at(7));
  write_checkpoint(dir.path(), 7, param_files(old_params), run_at(7));
  for (const char* name : {"W.npy", "run.json"}) {
    std::filesystem::remove(dir / name);
    std::filesystem::create_symlink(elsewhere / name, dir / name);
  }
  write_checkpoint(dir.path(), 8, param_files(new_params), run_at(8));
  EXPECT_FALSE(std::filesystem::is_symlink(dir / "W.npy"));
  EXPECT_EQ(read_npy(dir / "W.npy").data, new_params.W);
  EXPECT_EQ(read_npy(elsewhere / "W.npy").data, old_params.W);
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "run.json"));
  EXPECT_EQ(test::read_json(elsewhere / "run.json")["checkpoint"]["iteration"], 8);
  expect_same(load_checkpoint(dir.path()).params, new_params);
}

// A checkpoint that cannot be written says whether it was committed: a file that cannot be
// staged (here a directory in the way of b.npy.next) leaves the checkpoint before it, and none of
// its own staged files; one that
// cannot be published after run.json named it (a directory in the way of b.npy) leaves the new
// checkpoint, which loads from the files left as NAME.next.
TEST(Checkpoint, AFailedWriteSaysWhichCheckpointStays) {
  TempDir dir;
  const Params old_params = small_params(1.5f, true), new_params = small_params(-0.5f, true);
  write_checkpoint(dir.path(), 7, param_files(old_params), run_at(7));
  // Whether the checkpoint at iteration 8 was committed when its write failed, with a directory
  // in the way of `blocked`; the message names that file.
  const auto failed_write_committed = [&](const std::string& blocked) {
    std::filesystem::remove(dir / blocked);
    std::filesystem::create_directories(dir / blocked / "in_the_way");
    bool committed = false;
    try {
      write_checkpoint(dir.path(), 8, param_files(new_params), run_at(8));
      ADD_FAILURE() << "a checkpoint was written with a directory as " << blocked;
    } catch (const CheckpointWriteError& e) {
      committed = e.committed;
      EXPECT_NE(std::string(e.what()).find(blocked), std::string::npos) << e.what();
    }
    std::filesystem::remove_all(dir / blocked);
    return committed;
  };
  EXPECT_FALSE(failed_write_committed("b.npy.next"));
  // Not committed: what it had staged is removed (W.npy.next, before b.npy.next failed), not left
  // to hold a full disk's space until a --resume (a disk-full exploratory tester).
  EXPECT_FALSE(std::filesystem::exists(dir / "W.npy.next"));
  Checkpoint checkpoint = load_checkpoint(dir.path());
  EXPECT_EQ(checkpoint.iteration, 7);
  expect_same(checkpoint.params, old_params);

  EXPECT_TRUE(failed_write_committed("b.npy"));
  checkpoint = load_checkpoint(dir.path());
  EXPECT_EQ(checkpoint.iteration, 8);
  expect_same(checkpoint.params, new_params);
  std::sort(checkpoint.staged.begin(), checkpoint.staged.end());
  EXPECT_EQ(checkpoint.staged, (std::vector<std::string>{"a.npy", "b.npy"}));
}

// The steps write_checkpoint takes (host/checkpoint.hpp), replayed one at a time: a kill after
// any prefix of them must leave the old checkpoint or the new one, never a mixture or nothing.
TEST(Checkpoint, EveryStateAKillCanLeaveLoadsAsTheOldOrTheNewCheckpoint) {
  for (const bool visible_bias : {false, true}) {
    const Params old_params = small_params(1.0f, visible_bias);
    const Params new_params = small_params(2.0f, visible_bias);
    TempDir reference;  // the new checkpoint written in full, for its run.json
    write_checkpoint(reference.path(), 20, param_files(new_params), run_at(20));
    const std::string new_run = read_file(reference / "run.json");

    std::vector<std::function<void(const std::filesystem::path&)>> steps;
    for (const CheckpointFile& file : param_files(new_params)) {
      steps.push_back([file](const std::filesystem::path& dir) {
        write_file_atomic(dir / (file.name + ".next"), file.bytes);
      });
    }
    steps.push_back(
        [&](const std::filesystem::path& dir) { write_file_atomic(dir / "run.json", new_run); });
    for (const CheckpointFile& file : param_files(new_params)) {
      steps.push_back([file](const std::filesystem::path& dir) {
        std::filesystem::rename(dir / (file.name + ".next"), dir / file.name);
      });
    }
    const size_t commit = param_files(new_params).size() + 1;  // steps up to the run.json write
    for (size_t done = 0; done <= steps.size(); ++done) {
      SCOPED_TRACE("visible_bias " + std::to_string(visible_bias) + ", steps done " +
                   std::to_string(done));
      TempDir dir;
      write_checkpoint(dir.path(), 10, param_files(old_params), run_at(10));
      for (size_t s = 0; s < done; ++s) steps[s](dir.path());
      const Checkpoint checkpoint = load_checkpoint(dir.path());
      EXPECT_EQ(checkpoint.iteration, done < commit ? 10 : 20);
      expect_same(checkpoint.params, done < commit ? old_params : new_params);
      // eval and sample read a run directory the same way (it may be training meanwhile).
      expect_same(read_model(dir.path()), checkpoint.params);
      // Resuming tidies up: afterwards the directory holds exactly the loaded checkpoint.
      tidy_run_directory(dir.path(), checkpoint);
      for (const CheckpointFile& file : param_files(checkpoint.params)) {
        EXPECT_EQ(read_file(dir / file.name), file.bytes) << file.name;
        EXPECT_FALSE(on_disk(dir / (file.name + ".next"))) << file.name;
      }
      EXPECT_TRUE(load_checkpoint(dir.path()).staged.empty());
    }
  }
}

// Readers of a run that trains meanwhile (eval, sample): the writer's steps run between the
// reader's reads, through load_checkpoint's BeforeRead, at the moments that used to break them.
TEST(Checkpoint, APublishBetweenTheLooksAtAFileFindsTheFilePublished) {
  const Params old_params = small_params(1.0f, true);
  const Params new_params = small_params(2.0f, true);
  TempDir dir;
  write_checkpoint(dir.path(), 10, param_files(old_params), run_at(10));
  TempDir reference;  // the new checkpoint written in full, for its run.json
  write_checkpoint(reference.path(), 20, param_files(new_params), run_at(20));
  // Staged and committed, not yet published: W.npy is the old file, W.npy.next the new one.
  for (const CheckpointFile& file : param_files(new_params)) {
    write_file_atomic(dir / (file.name + ".next"), file.bytes);
  }
  write_file_atomic(dir / "run.json", read_file(reference / "run.json"));
  // The publish happens after the reader has seen the old W.npy, before it looks at W.npy.next.
  bool published = false;
  const auto publish = [&](const std::filesystem::path& path) {
    if (path.filename() != "W.npy.next" || published) return;
    for (const CheckpointFile& file : param_files(new_params)) {
      std::filesystem::rename(dir / (file.name + ".next"), dir / file.name);
    }
    published = true;
  };
  const Checkpoint checkpoint = load_checkpoint(dir.path(), publish);
  EXPECT_TRUE(published);
  EXPECT_EQ(checkpoint.iteration, 20);
  expect_same(checkpoint.params, new_params);
  EXPECT_TRUE(checkpoint.staged.empty());
}

TEST(Checkpoint, TwoCheckpointsCommittedDuringAReadAreReadAgainByALiveReader) {
  TempDir dir;
  write_checkpoint(dir.path(), 10, param_files(small_params(1.0f, false)), run_at(10));
  // Once the reader has read run.json (iteration 10), the run commits iterations 20 and 30: then
  // no file on disk is iteration 10's.
  int commits = 0;
  const auto two_commits_once = [&](const std::filesystem::path& path) {
    if (path.filename() != "W.npy" || commits > 0) return;
    for (const int64_t iteration : {20, 30}) {
      write_checkpoint(dir.path(), iteration,
                       param_files(small_params(static_cast<float>(iteration), false)),
                       run_at(iteration));
      ++commits;
    }
  };
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path(), two_commits_once), (dir / "W.npy").string(),
                     "does not match the SHA-256");
  write_checkpoint(dir.path(), 10, param_files(small_params(1.0f, false)), run_at(10));
  commits = 0;
  const Checkpoint checkpoint = load_newest_checkpoint(dir.path(), two_commits_once);
  EXPECT_EQ(commits, 2);
  EXPECT_EQ(checkpoint.iteration, 30);
  expect_same(checkpoint.params, small_params(30.0f, false));
}

TEST(Checkpoint, ALiveReaderGivesUpOnARunThatCommitsDuringEveryReadAndOnDamageAtOnce) {
  TempDir dir;
  int64_t iteration = 10;
  write_checkpoint(dir.path(), iteration, param_files(small_params(1.0f, false)),
                   run_at(iteration));
  int reads_of_w = 0;
  const auto two_commits_each_time = [&](const std::filesystem::path& path) {
    if (path.filename() != "W.npy") return;
    ++reads_of_w;
    for (int commit = 0; commit < 2; ++commit) {
      iteration += 10;
      write_checkpoint(dir.path(), iteration,
                       param_files(small_params(static_cast<float>(iteration), false)),
                       run_at(iteration));
    }
  };
  EXPECT_INPUT_ERROR(load_newest_checkpoint(dir.path(), two_commits_each_time),
                     (dir / "W.npy").string(), "run.json changed during each of 5 reads");
  // Two looks at W.npy (before and after W.npy.next) per read.
  EXPECT_EQ(reads_of_w, 2 * kLiveReadAttempts);

  // A damaged file leaves run.json as it was: refused after one read.
  write_npy(dir / "b.npy", small_params(99.0f, false).b, {3});
  int reads_of_run_json = 0;
  const auto count = [&](const std::filesystem::path& path) {
    if (path.filename() == "run.json") ++reads_of_run_json;
  };
  EXPECT_INPUT_ERROR(load_newest_checkpoint(dir.path(), count), (dir / "b.npy").string(),
                     "does not match the SHA-256");
  EXPECT_EQ(reads_of_run_json, 1);
}

TEST(Checkpoint, AFileThatDoesNotMatchItsChecksumIsRefused) {
  TempDir dir;
  write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, false)), run_at(3));
  // A W.npy from another checkpoint: a valid file, but not this checkpoint's.
  write_npy(dir / "W.npy", small_params(9.0f, false).W, {6, 3});
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), (dir / "W.npy").string(), "SHA-256");
  std::filesystem::remove(dir / "W.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), (dir / "W.npy").string(), "missing");
}

// eval's and sample's loader (read_model) on a run directory checks what load_checkpoint checks: a
// file from another checkpoint is refused, and a.npy that the checkpoint lacks is not read (it
// once scored a mixture of two models, and a stray a.npy moved log Z from 543 to 3925).
TEST(Checkpoint, ReadModelOfARunDirectoryReadsItsCheckpoint) {
  TempDir dir;
  const Params params = small_params(1.0f, false);
  write_checkpoint(dir.path(), 3, param_files(params), run_at(3));
  write_npy(dir / "a.npy", {1, 2, 3, 4, 5, 6}, {6});
  expect_same(read_model(dir.path()), params);
  write_npy(dir / "b.npy", small_params(9.0f, false).b, {3});
  // An edited file: the message says how to use the files all the same.
  EXPECT_INPUT_ERROR(read_model(dir.path()), "--model " + dir.path().string(),
                     (dir / "b.npy").string(), "SHA-256",
                     "; to use the files as they are, copy W.npy and b.npy to a new directory "
                     "without run.json, a bare model");
  write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, true)), run_at(3));
  write_npy(dir / "W.npy", small_params(9.0f, true).W, {6, 3});
  EXPECT_INPUT_ERROR(read_model(dir.path()), "copy W.npy, b.npy and a.npy to a new directory");
  // A ternary run's files would be read as binary without run.json: the advice keeps the type.
  nlohmann::json ternary_run = run_at(3);
  ternary_run["recipe"]["hidden_type"] = "ternary";
  write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, false)), ternary_run);
  write_npy(dir / "b.npy", small_params(9.0f, false).b, {3});
  EXPECT_INPUT_ERROR(read_model(dir.path()),
                     "copy W.npy and b.npy to a new directory with a run.json of only "
                     "{\"recipe\": {\"hidden_type\": \"ternary\"}}, a bare ternary model");
}

// A SHA-256 recorded with upper-case hex digits (an edited run.json) names the same digest; a
// recorded value that is no SHA-256 at all is called so, not the file damaged.
TEST(Checkpoint, RecordedChecksumsInUpperCaseMatch) {
  TempDir dir;
  const Params params = small_params(1.0f, true);
  write_checkpoint(dir.path(), 3, param_files(params), run_at(3));
  nlohmann::json run = test::read_json(dir / "run.json");
  for (auto& [name, sum] : run["checkpoint"]["sha256"].items()) {
    std::string upper = sum.get<std::string>();
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    sum = upper;
  }
  test::write_json(dir / "run.json", run);
  expect_same(load_checkpoint(dir.path()).params, params);
  expect_same(read_model(dir.path()), params);
  run["checkpoint"]["sha256"]["b.npy"] = "not-a-digest";
  test::write_json(dir / "run.json", run);
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), (dir / "b.npy").string(),
                     "checkpoint.sha256.b.npy \"not-a-digest\" is not a SHA-256 (64 hex digits)");
}

TEST(Checkpoint, BrokenRunJsonIsRefusedNamingIt) {
  TempDir dir;
  const std::string run_json = (dir / "run.json").string();
  EXPECT_INPUT_ERROR(load_checkpoint(dir / "missing"), "not a directory");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "cannot open");
  write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, false)), run_at(3));
  const nlohmann::json good = test::read_json(dir / "run.json");

  test::write_bytes(dir / "run.json", "{\"iteration\": 3, ");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "not valid JSON");
  test::write_bytes(dir / "run.json", "[1, 2]");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "no \"checkpoint\" entry");

  const auto edited = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json run = good;
    edit(run);
    test::write_json(dir / "run.json", run);
  };
  edited([](nlohmann::json& run) { run["iteration"] = 4; });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "inconsistent iteration");
  edited([](nlohmann::json& run) { run["checkpoint"]["iteration"] = "three"; });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "checkpoint.iteration", "wrong type");
  edited([](nlohmann::json& run) { run["checkpoint"]["sha256"]["../W.npy"] = "00"; });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "outside the directory");
  edited([](nlohmann::json& run) { run["checkpoint"]["sha256"].erase("b.npy"); });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "lacks b.npy");
  edited([](nlohmann::json& run) { run["checkpoint"]["sha256"]["W.npy"] = 12; });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "not a string");
  // A recipe that is not an object records no hidden type: refused, not read as binary units.
  edited([](nlohmann::json& run) { run["recipe"] = 5; });
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), run_json, "recipe is not an object");
}

TEST(Checkpoint, ParameterFilesThatBelongTogetherButDisagreeAreRefused) {
  TempDir dir;
  const auto fresh = [&] {
    write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, true)), run_at(3));
  };
  fresh();
  write_npy(dir / "b.npy", {1.0f, 2.0f}, {2});  // H = 3 in W.npy
  test::rehash(dir.path(), "b.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), dir.path().string(), "b holds 2 values");
  fresh();
  write_npy(dir / "a.npy", {1.0f, 2.0f, 3.0f}, {3});  // d = 6 in W.npy
  test::rehash(dir.path(), "a.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), "a holds 3 values");
  fresh();
  write_npy(dir / "W.npy", std::vector<float>(18, 0.0f), {18});
  test::rehash(dir.path(), "W.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), (dir / "W.npy").string(), "expected 2-D");
  fresh();
  write_npy(dir / "b.npy", {1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f}, {3});
  test::rehash(dir.path(), "b.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), "not all finite");
  fresh();
  test::write_bytes(dir / "W.npy", std::string("\x93NUMPY\x01\x00", 8));
  test::rehash(dir.path(), "W.npy");
  EXPECT_INPUT_ERROR(load_checkpoint(dir.path()), (dir / "W.npy").string(), "truncated");
}

TEST(Checkpoint, TidyingRemovesWhatKilledWritersLeftAndNothingElse) {
  TempDir dir;
  write_checkpoint(dir.path(), 3, param_files(small_params(1.0f, false)), run_at(3));
  // Another .npy's temporary file is stale when its writer is gone (999999999 is beyond any
  // pid_max); a live one's (this process stands for a `sample --out` into the run directory) is
  // being written.
  const std::string live = ".samples.npy.tmp." + std::to_string(::getpid());
  const std::vector<std::string> stale = {".W.npy.tmp.1234",     ".run.json.tmp.7",
                                          ".metrics.csv.tmp.99", ".b.npy.next.tmp.5",
                                          "W.npy.next",          ".samples.npy.tmp.999999999"};
  const std::vector<std::string> kept = {"notes.txt", ".W.npy.tmp.x1", ".hidden", "mine.next.txt",
                                         live};
  for (const auto& name : stale) test::write_bytes(dir / name, "x");
  for (const auto& name : kept) test::write_bytes(dir / name, "x");
  tidy_run_directory(dir.path(), load_checkpoint(dir.path()));
  for (const auto& name : stale) EXPECT_FALSE(on_disk(dir / name)) << name;
  for (const auto& name : kept) EXPECT_TRUE(on_disk(dir / name)) << name;
  EXPECT_EQ(load_checkpoint(dir.path()).iteration, 3);
}

// --- the training loop: divergence --------------------------------------------------------------

// The CPU backend, except that from iteration `from` on, get_params() returns the parameters
// changed by `poison`: a divergence that arrives at a known iteration.
class PoisonedBackend final : public test::ForwardingCpuBackend {
 public:
  PoisonedBackend(int64_t from, std::function<void(Params&)> poison)
      : from_(from), poison_(std::move(poison)) {}
  Params get_params() override {
    Params params = inner().get_params();
    if (reached_ >= from_) poison_(params);
    return params;
  }
  void train_cd(const Recipe& recipe, int64_t first_iteration, int64_t count) override {
    inner().train_cd(recipe, first_iteration, count);
    reached_ = first_iteration + count;
  }
  void train_minibatch(const Recipe& recipe, int64_t first_update, int64_t count) override {
    inner().train_minibatch(recipe, first_update, count);
    reached_ = first_update + count;
  }

 private:
  int64_t from_;
  std::function<void(Params&)> poison_;
  int64_t reached_ = 0;
};

TrainOptions short_run(const std::filesystem::path& out) {
  TrainOptions options;
  options.recipe.iters = 1000;
  options.recipe.hidden = 16;
  options.recipe.seed = 5;
  options.data_dir = RBM_MNIST_DIR;
  options.log_every = 100;
  options.checkpoint_every = 100;
  options.out_dir = out;
  return options;
}

// The parameters an uninterrupted run of `options` has after `iterations`.
Params reference_params(const TrainOptions& options, int64_t iterations) {
  const Dataset train = load_mnist(options.data_dir, options.digit, options.split);
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->stage(train);
  backend->set_params(init_params(options.recipe, train));
  backend->train_cd(options.recipe, 0, iterations);
  return backend->get_params();
}

void expect_divergence_keeps_checkpoint(const std::function<void(Params&)>& poison,
                                        const std::string& what) {
  TempDir dir;
  const TrainOptions options = short_run(dir / "run");
  PoisonedBackend backend(250, poison);
  try {
    run_training(backend, options);
    ADD_FAILURE() << "training did not stop";
  } catch (const DivergenceError& e) {
    const std::string message = e.what();
    for (const std::string& part :
         {what, std::string("at the check of iteration 300"),
          std::string("last good checkpoint, iteration 200"), options.out_dir.string()}) {
      EXPECT_NE(message.find(part), std::string::npos) << message << " lacks " << part;
    }
  }
  // On disk: the checkpoint of iteration 200, exactly as an uninterrupted run has it, and the
  // metrics up to there.
  const Checkpoint checkpoint = load_checkpoint(options.out_dir);
  EXPECT_EQ(checkpoint.iteration, 200);
  expect_same(checkpoint.params, reference_params(options, 200));
  const std::string csv = read_file(options.out_dir / "metrics.csv");
  EXPECT_NE(csv.find("\n200,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("\n300,"), std::string::npos) << csv;
}

// The staging tests below run twice: with unnamed temporary files where this file system allows
// them (O_TMPFILE), and with the named .NAME.tmp.PID files of file systems that do not (NFS, vfat,
// ...), which allow_unnamed_temporaries(false) gives here.
class AtomicFileTemporaries : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { allow_unnamed_temporaries(GetParam()); }
  void TearDown() override { allow_unnamed_temporaries(true); }
  // Whether the temporary files of this test have no name while they are written.
  bool unnamed() const {
    if (!GetParam()) return false;
    const test::TempDir dir;
    const int probe = ::open(dir.path().c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (probe >= 0) ::close(probe);
    return probe >= 0;
  }
};
std::string temporaries_name(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "UnnamedWhereAllowed" : "Named";
}
INSTANTIATE_TEST_SUITE_P(Both, AtomicFileTemporaries, ::testing::Bool(), temporaries_name);

// A command without signal handlers of its own (sample, eval) killed by SIGINT, SIGTERM or SIGHUP
// while it writes a file leaves neither the file nor its temporary: here the signal comes from
// inside the write, after its first piece, in a child process (a death test).
TEST_P(AtomicFileTemporaries, ASignalDuringAWriteLeavesNoTemporaryFile) {
  GTEST_FLAG_SET(death_test_style, "fast");  // fork only: the child writes into this `dir`
  test::TempDir dir;
  const std::filesystem::path path = dir / "states.npy";
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP}) {
    SCOPED_TRACE(signal_number);
    const auto write_then_die = [&] {
      std::signal(signal_number, SIG_DFL);  // as a shell starts it (nohup ignores SIGHUP)
      int piece = 0;
      write_file_atomic(path, [&]() -> std::string_view {
        if (++piece == 2) std::raise(signal_number);
        return piece <= 3 ? std::string_view("0123456789") : std::string_view();
      });
    };
    EXPECT_EXIT(write_then_die(), ::testing::KilledBySignal(signal_number), "");
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a temporary file was left";
  }
  // Without a signal the guard is gone afterwards: the default action is back.
  write_file_atomic(path, "done");
  struct sigaction action {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_DFL);
}

// A staged file is beside its name until committed: destroyed uncommitted, it leaves the old file
// and no temporary; committed, it replaces the file; moved, only the new owner commits it.
TEST_P(AtomicFileTemporaries, AStagedFileReplacesNothingUntilCommitted) {
  test::TempDir dir;
  write_file_atomic(dir / "a", "old a");
  write_file_atomic(dir / "b", "old b");
  const auto file_count = [&] {
    return std::distance(std::filesystem::directory_iterator(dir.path()),
                         std::filesystem::directory_iterator());
  };
  {
    StagedFile a(dir / "a", "new a");
    StagedFile b(dir / "b", "new b");
    EXPECT_EQ(file_count(), 4);  // a, b and their temporary files
    EXPECT_EQ(read_file(dir / "a"), "old a");
  }
  EXPECT_EQ(read_file(dir / "a"), "old a");
  EXPECT_EQ(read_file(dir / "b"), "old b");
  EXPECT_EQ(file_count(), 2) << "a temporary file was left";

  StagedFile staged(dir / "a", "new a");
  StagedFile owner(std::move(staged));
  EXPECT_THROW(staged.commit(), std::logic_error);  // NOLINT(bugprone-use-after-move): on purpose
  owner.commit();
  EXPECT_EQ(read_file(dir / "a"), "new a");
  EXPECT_THROW(owner.commit(), std::logic_error);
  EXPECT_EQ(file_count(), 2);
}

// commit_unless_taken never replaces: where the name is taken (another bench_all run finishing in
// the same second) it leaves that file as it was, removes its temporary file and says so.
TEST_P(AtomicFileTemporaries, ACommitUnlessTakenReplacesNoFile) {
  test::TempDir dir;
  write_file_atomic(dir / "taken", "theirs");
  StagedFile refused(dir / "taken", "ours");
  EXPECT_FALSE(refused.commit_unless_taken());
  EXPECT_FALSE(refused.in_place());
  EXPECT_EQ(read_file(dir / "taken"), "theirs");
  EXPECT_THROW(refused.commit(), std::logic_error);  // nothing staged any more
  StagedFile accepted(dir / "free", "ours");
  EXPECT_TRUE(accepted.commit_unless_taken());
  EXPECT_TRUE(accepted.in_place());
  EXPECT_EQ(read_file(dir / "free"), "ours");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            2)
      << "a temporary file was left";
}

// The fallbacks, in a child process whose seccomp filter fails the system calls as a kernel or
// file system without them would: renameat2 with ENOSYS (before Linux 3.15, or a container's filter
// that knows no renameat2), then link and linkat too with EPERM, with the named temporary files of
// a file system that has neither hard links nor unnamed files (vfat). Each level still writes a
// free name and still leaves a taken one as it was, without a temporary file left over.
TEST(StagedFile, CommitUnlessTakenFallsBackWithoutRenameat2OrHardLinks) {
  for (const bool without_links : {false, true}) {
    SCOPED_TRACE(without_links ? "no renameat2, no hard links" : "no renameat2");
    test::TempDir dir;
    write_file_atomic(dir / "taken", "theirs");
    std::fflush(nullptr);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
      // Exit codes: 0 done, 2 seccomp unavailable here, 3 the filter not reaching the calls, 10+
      // the first expectation that failed.
      std::vector<int> failing_calls = {__NR_renameat2};
      if (without_links) {
        failing_calls.push_back(__NR_linkat);
#ifdef __NR_link  // x86-64's link; AArch64 has only linkat
        failing_calls.push_back(__NR_link);
#endif
      }
      const int injected = without_links ? EPERM : ENOSYS;
      if (!test::fail_system_calls(failing_calls, injected)) ::_exit(2);
      // The filter must reach the calls the code makes (a libc or sanitizer runtime could route
      // them through another system call): else the expectations below would hold untested.
      const std::string probe = (dir / "probe").string(), probe_to = (dir / "probe2").string();
      // (glibc's renameat2 reports a kernel's ENOSYS as EINVAL: no flag is known then.)
      const int renameat2_errno = injected == ENOSYS ? EINVAL : injected;
      if (::renameat2(AT_FDCWD, probe.c_str(), AT_FDCWD, probe_to.c_str(), RENAME_NOREPLACE) == 0 ||
          errno != renameat2_errno) {
        ::_exit(3);
      }
      if (without_links && (::link(probe.c_str(), probe_to.c_str()) == 0 || errno != injected)) {
        ::_exit(3);
      }
      allow_unnamed_temporaries(!without_links);
      try {
        StagedFile refused(dir / "taken", "ours");
        if (refused.commit_unless_taken()) ::_exit(10);
        if (read_file(dir / "taken") != "theirs") ::_exit(11);
        StagedFile accepted(dir / "free", "ours");
        if (!accepted.commit_unless_taken()) ::_exit(12);
        if (read_file(dir / "free") != "ours") ::_exit(13);
        if (std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()) != 2) {
          ::_exit(14);  // a temporary file was left
        }
      } catch (...) {
        ::_exit(15);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died: status " << status;
    if (WEXITSTATUS(status) == 2) GTEST_SKIP() << "seccomp filters are not available here";
    if (WEXITSTATUS(status) == 3) {
      GTEST_SKIP() << "the seccomp filter did not reach renameat2 or link here";
    }
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's failed expectation (see the codes above)";
  }
}

// A file whose name is near the 255 bytes a name may have is written too: its temporary name
// (.NAME.tmp.PID) is cut to fit, at a character's start (a tester's 250-byte `sample --out` was
// refused: "File name too long").
TEST_P(AtomicFileTemporaries, ANameOfAlmost255BytesIsWritten) {
  test::TempDir dir;
  const std::string ascii = std::string(251, 'a') + ".npy";  // 255 bytes
  std::string accented;
  while (accented.size() < 250) accented += "\xc3\xa9";  // é, 2 bytes each
  accented += ".npy";
  for (const std::string& name : {ascii, accented}) {
    SCOPED_TRACE(name.size());
    write_file_atomic(dir / name, "old");
    StagedFile staged(dir / name, "new");
    EXPECT_EQ(read_file(dir / name), "old");
    staged.commit();
    EXPECT_EQ(read_file(dir / name), "new");
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            2);
}

// A staged file written a piece at a time (sample's --out, a block of chains at a time): the
// pieces in order, in place only once finished and committed; it cannot be committed before it is
// finished, nor written after; moved while open, the new owner writes on.
TEST_P(AtomicFileTemporaries, AStagedFileWrittenInPiecesIsInPlaceOnlyOnceCommitted) {
  test::TempDir dir;
  write_file_atomic(dir / "s", "old");
  StagedFile first(dir / "s");
  first.append("one ");
  StagedFile file(std::move(first));
  file.append("");
  file.append("two");
  EXPECT_THROW(file.commit(), std::logic_error);  // not finished
  EXPECT_EQ(read_file(dir / "s"), "old");
  file.finish();
  EXPECT_THROW(file.append("three"), std::logic_error);
  EXPECT_THROW(file.finish(), std::logic_error);
  EXPECT_EQ(read_file(dir / "s"), "old");
  file.commit();
  EXPECT_EQ(read_file(dir / "s"), "one two");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

// A file being written has no name where the file system allows (O_TMPFILE): a process killed
// then by SIGKILL leaves nothing. Once finished it is .NAME.tmp.PID, for commit() to rename. Where
// O_TMPFILE is not supported (tried on the test's directory), it is named from the start.
TEST_P(AtomicFileTemporaries, AFileBeingWrittenHasNoNameWhereTheFileSystemAllows) {
  test::TempDir dir;
  const bool unnamed = this->unnamed();
  const auto names = [&] { return test::entries_of(dir.path()); };
  const std::string tmp_name = ".s.tmp." + std::to_string(::getpid());
  StagedFile file(dir / "s");
  file.append("bytes");
  EXPECT_EQ(names(), unnamed ? std::vector<std::string>{} : std::vector<std::string>{tmp_name});
  file.finish();
  EXPECT_EQ(names(), std::vector<std::string>{tmp_name});
  file.commit();
  EXPECT_EQ(names(), std::vector<std::string>{"s"});
  EXPECT_EQ(read_file(dir / "s"), "bytes");
  // A name left by a dead process with our PID is taken over.
  write_file_atomic(dir / tmp_name, "stale");
  StagedFile again(dir / "s", "new bytes");
  again.commit();
  EXPECT_EQ(read_file(dir / "s"), "new bytes");
  EXPECT_EQ(names(), std::vector<std::string>{"s"});
}

// A command killed by a signal while it holds staged files (sample's outputs, written all before
// any is put in place) leaves none of their temporaries, and the files as they were.
TEST_P(AtomicFileTemporaries, ASignalWhileFilesAreStagedLeavesNoTemporaryFile) {
  GTEST_FLAG_SET(death_test_style, "fast");  // fork only: the child writes into this `dir`
  test::TempDir dir;
  write_file_atomic(dir / "a", "old a");
  const auto stage_then_die = [&] {
    std::signal(SIGTERM, SIG_DFL);
    StagedFile a(dir / "a", "new a");
    StagedFile b(dir / "b", "new b");
    StagedFile c(dir / "c", [&, piece = 0]() mutable -> std::string_view {
      if (++piece == 2) std::raise(SIGTERM);
      return "c";
    });
  };
  EXPECT_EXIT(stage_then_die(), ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_EQ(read_file(dir / "a"), "old a");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1)
      << "a temporary file was left";
  // Here, without a signal: the guard goes with the last staged file, and the default is back.
  {
    const StagedFile a(dir / "a", "unused a");
    const StagedFile b(dir / "b", "unused b");
  }
  EXPECT_EQ(read_file(dir / "a"), "old a");
  struct sigaction action {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_DFL);
}

// With a handler of the program's own (StopSignals' one-shot one, as sample's during its writes):
// a first signal goes to it and the files stay staged; a second kills the program, as the handler
// being one-shot means, and removes their temporaries. After the writes the action is the one the
// handler would have left: the default once it has had its signal.
TEST_P(AtomicFileTemporaries, ASecondSignalWhileFilesAreStagedRemovesTheirTemporaries) {
  GTEST_FLAG_SET(death_test_style, "fast");  // fork only: the child writes into this `dir`
  test::TempDir dir;
  const auto signal_twice = [&] {
    const StopSignals signals("test", "stopping");
    const StagedFile a(dir / "a", "new a");
    std::raise(SIGTERM);
    if (signals.received() != SIGTERM) std::_Exit(3);
    const StagedFile b(dir / "b", "new b");
    std::raise(SIGTERM);
    std::_Exit(4);
  };
  EXPECT_EXIT(signal_twice(), ::testing::KilledBySignal(SIGTERM), "");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a temporary file was left";

  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &before), 0);
  {
    const StopSignals signals("test", "stopping");
    {
      StagedFile a(dir / "a", "new a");
      std::raise(SIGTERM);
      EXPECT_EQ(signals.received(), SIGTERM);
      a.commit();
    }
    struct sigaction action {};
    ASSERT_EQ(sigaction(SIGTERM, nullptr, &action), 0);
    EXPECT_EQ(action.sa_handler, SIG_DFL);
    // Without a signal the program's handler is back as it was.
    const StopSignals again("test", "stopping");
    struct sigaction installed {};
    ASSERT_EQ(sigaction(SIGTERM, nullptr, &installed), 0);
    write_file_atomic(dir / "b", "b");
    ASSERT_EQ(sigaction(SIGTERM, nullptr, &action), 0);
    EXPECT_EQ(action.sa_handler, installed.sa_handler);
    EXPECT_EQ(action.sa_flags, installed.sa_flags);
  }
  EXPECT_EQ(read_file(dir / "a"), "new a");
  struct sigaction after {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, before.sa_handler);
}

// Writing through a symbolic link replaces the file it names and leaves the link (a rename over
// the link would make it a file: `--out /dev/stdout` replaced the system's /dev/stdout), through
// a chain of relative and absolute links; a dangling link's target is created; a loop is refused.
TEST_P(AtomicFileTemporaries, AWriteThroughASymbolicLinkReplacesItsTarget) {
  test::TempDir dir;
  std::filesystem::create_directory(dir / "sub");
  write_file_atomic(dir / "sub" / "target", "old");
  std::filesystem::create_symlink("sub/target", dir / "near");  // relative to dir
  std::filesystem::create_symlink(dir / "near", dir / "far");   // absolute, to a link
  write_file_atomic(dir / "far", "new");
  EXPECT_EQ(read_file(dir / "sub" / "target"), "new");
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "near"));
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "far"));
  EXPECT_EQ(write_target(dir / "far"), dir / "sub" / "target");
  EXPECT_EQ(write_target(dir / "sub" / "target"), dir / "sub" / "target");

  std::filesystem::create_symlink("sub/created", dir / "dangling");
  write_file_atomic(dir / "dangling", "made");
  EXPECT_EQ(read_file(dir / "sub" / "created"), "made");
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "dangling"));

  std::filesystem::create_symlink("loop-b", dir / "loop-a");
  std::filesystem::create_symlink("loop-a", dir / "loop-b");
  EXPECT_INPUT_ERROR(write_file_atomic(dir / "loop-a", "never"),
                     "cannot follow its symbolic links");
  // Nothing but the files above: no temporary file left anywhere.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            6);  // sub, near, far, dangling, loop-a, loop-b
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir / "sub"),
                          std::filesystem::directory_iterator()),
            2);  // target, created

  // Another user's link in a sticky world-writable directory is followed as open(2) follows it:
  // not when fs.protected_symlinks is on (as systemd sets it), even by root; else as any link.
  // Root's own link there, and another user's in a directory that is not sticky, are followed.
  // Changing a link's owner needs root.
  if (::geteuid() == 0) {
    const bool protected_links =
        read_file_if_exists("/proc/sys/fs/protected_symlinks").value_or("1").starts_with("1");
    const std::filesystem::path sticky = dir / "sticky", open_dir = dir / "open";
    for (const auto& [shared, mode] : {std::pair{sticky, 01777}, std::pair{open_dir, 0777}}) {
      std::filesystem::create_directory(shared);
      ASSERT_EQ(::chmod(shared.c_str(), static_cast<mode_t>(mode)), 0);
      std::filesystem::create_symlink(dir / "sub" / "target", shared / "theirs");
      ASSERT_EQ(::lchown((shared / "theirs").c_str(), 65534, 65534), 0);
      std::filesystem::create_symlink(dir / "sub" / "target", shared / "mine");  // root's own
    }
    if (protected_links) {
      // Another user's link in a sticky directory is not followed.
      EXPECT_INPUT_ERROR(write_file_atomic(sticky / "theirs", "never"), "fs.protected_symlinks");
      EXPECT_EQ(read_file(dir / "sub" / "target"), "new");
    } else {
      write_file_atomic(sticky / "theirs", "theirs, unprotected");
      EXPECT_EQ(read_file(dir / "sub" / "target"), "theirs, unprotected");
    }
    write_file_atomic(open_dir / "theirs", "theirs, not sticky");
    EXPECT_EQ(read_file(dir / "sub" / "target"), "theirs, not sticky");
    write_file_atomic(sticky / "mine", "mine");
    EXPECT_EQ(read_file(dir / "sub" / "target"), "mine");
  }
}

TEST(TrainingDivergence, ANonFiniteParameterStopsBeforeItIsWritten) {
  expect_divergence_keeps_checkpoint(
      [](Params& p) { p.W[p.W.size() / 2] = std::numeric_limits<float>::quiet_NaN(); },
      "a parameter is not finite");
  expect_divergence_keeps_checkpoint(
      [](Params& p) { p.b[0] = std::numeric_limits<float>::infinity(); },
      "a parameter is not finite");
}

// Weights at FLT_MAX are finite, and so are the metrics of such a model: the run trains on (it once
// stopped here, "a metric is not finite", because the float pre-activations overflowed).
TEST(TrainingDivergence, FiniteHugeWeightsTrainOnWithFiniteMetrics) {
  TempDir dir;
  const TrainOptions options = short_run(dir / "run");
  PoisonedBackend backend(
      250, [](Params& p) { std::fill(p.W.begin(), p.W.end(), std::numeric_limits<float>::max()); });
  run_training(backend, options);
  EXPECT_EQ(load_checkpoint(options.out_dir).iteration, options.recipe.iters);
  const std::string csv = read_file(options.out_dir / "metrics.csv");
  EXPECT_NE(csv.find("\n300,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("nan"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("inf"), std::string::npos) << csv;
}

// The guard itself: any number of a metrics row that is not finite, with or without held-out
// images and --eval-every columns.
TEST(TrainingDivergence, MetricsFiniteNamesEveryColumn) {
  MetricsRow row;
  row.recon_error_heldout = 0.1;
  row.free_energy_heldout = -100.0;
  row.pll_train = -80.0;
  row.pll_heldout = -85.0;
  row.eval = EvalMetrics{
      .log_z = 500.0, .log_z_method = "exact", .log_p_train = -90.0, .log_p_heldout = -95.0};
  EXPECT_TRUE(metrics_finite(row));
  const double bad[] = {std::numeric_limits<double>::quiet_NaN(),
                        std::numeric_limits<double>::infinity(),
                        -std::numeric_limits<double>::infinity()};
  for (const double value : bad) {
    const std::vector<std::function<void(MetricsRow&)>> spoil = {
        [&](MetricsRow& r) { r.recon_error_train = value; },
        [&](MetricsRow& r) { r.free_energy_train = value; },
        [&](MetricsRow& r) { r.recon_error_heldout = value; },
        [&](MetricsRow& r) { r.free_energy_heldout = value; },
        [&](MetricsRow& r) { r.pll_train = value; },
        [&](MetricsRow& r) { r.pll_heldout = value; },
        [&](MetricsRow& r) { r.eval->log_z = value; },
        [&](MetricsRow& r) { r.eval->log_p_train = value; },
        [&](MetricsRow& r) { r.eval->log_p_heldout = value; }};
    for (size_t k = 0; k < spoil.size(); ++k) {
      MetricsRow spoiled = row;
      spoil[k](spoiled);
      EXPECT_FALSE(metrics_finite(spoiled)) << "column " << k << " = " << value;
    }
  }
  row.recon_error_heldout.reset();
  row.free_energy_heldout.reset();
  row.pll_heldout.reset();
  row.eval.reset();
  EXPECT_TRUE(metrics_finite(row));
}

// metrics.csv of an earlier version (no PLL columns; with --eval-every, PLL after log_p_heldout)
// is read in this version's columns, moved by name, empty where it logged nothing; this version's
// passes as it is; anything else is refused.
TEST(MetricsCsv, AnEarlierVersionsFileTakesTheNewColumns) {
  const std::string base =
      "iteration,seconds,recon_error_train,recon_error_heldout,free_energy_train,"
      "free_energy_heldout";
  const std::string earlier_eval = base +
                                   ",log_z,log_z_method,log_p_train,log_p_heldout,pll_train,"
                                   "pll_heldout\n"
                                   "100,0.1,0.03,,-200,,,,,,,\n"
                                   "200,0.2,0.02,,-210,,543.1,exact,-300.5,,-90.5,\n";
  EXPECT_EQ(metrics_csv_in_current_columns(earlier_eval),
            metrics_csv_header(true) +
                "100,0.1,0.03,,-200,,,,,,,\n"
                "200,0.2,0.02,,-210,,-90.5,,543.1,exact,-300.5,\n");
  const std::string earlier = base + "\n100,0.1,0.03,0.04,-200,-190\n";
  EXPECT_EQ(metrics_csv_in_current_columns(earlier),
            metrics_csv_header(false) + "100,0.1,0.03,0.04,-200,-190,,\n");
  const std::string current = metrics_csv_header(false) + "100,0.1,0.03,0.04,-200,-190,-90,-95\n";
  EXPECT_EQ(metrics_csv_in_current_columns(current), current);
  EXPECT_EQ(metrics_csv_in_current_columns("iteration,seconds\n100,1\n"), std::nullopt);
  // From a line that is not a row of its version on, the text stays as it is (the reader refuses
  // it by line): a short row, an empty line, a last row without its newline.
  const std::string row = "100,0.1,0.03,0.04,-200,-190\n";
  EXPECT_EQ(metrics_csv_in_current_columns(base + "\n" + row + "200,0.1\n" + row),
            metrics_csv_header(false) + "100,0.1,0.03,0.04,-200,-190,,\n200,0.1\n" + row);
  EXPECT_EQ(metrics_csv_in_current_columns(base + "\n" + row + "\n"),
            metrics_csv_header(false) + "100,0.1,0.03,0.04,-200,-190,,\n\n");
  EXPECT_EQ(metrics_csv_in_current_columns(base + "\n" + row + "200,0.2,0.02,0.03,-210,-200"),
            metrics_csv_header(false) + "100,0.1,0.03,0.04,-200,-190,,\n" +
                "200,0.2,0.02,0.03,-210,-200");
}

// The trainer's fixed metric batches (fixed_batch) spread their rows over the whole set: row r is
// image floor(r n / m) of n, with its label, not the first m images (the first images of a file
// can be one class or one writer). Deterministic.
TEST(Metrics, FixedBatchSpreadsItsRowsOverTheImages) {
  Dataset images;
  images.width = 3;
  images.height = 1;
  images.rows = 10;
  for (int r = 0; r < 10; ++r) {
    for (int i = 0; i < 3; ++i) images.pixels.push_back(static_cast<uint8_t>((r >> i) & 1));
    images.labels.push_back(static_cast<uint8_t>(r));
  }
  const Dataset batch = fixed_batch(images, 4);
  ASSERT_EQ(batch.rows, 4);
  ASSERT_EQ(batch.cols(), 3);
  const int want[] = {0, 2, 5, 7};  // floor(r 10 / 4)
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(batch.labels[r], want[r]) << "row " << r;
    EXPECT_TRUE(std::equal(batch.row(r), batch.row(r) + 3, images.row(want[r]))) << "row " << r;
  }
  const Dataset all = fixed_batch(images, 500);  // fewer images than asked: all, in order
  EXPECT_EQ(all.rows, 10);
  EXPECT_EQ(all.pixels, images.pixels);
  EXPECT_EQ(all.labels, images.labels);
}

}  // namespace
}  // namespace rbm
