// The acknowledgement of a stop signal (host/signals.hpp), in-process: a signal that the program
// does not look at within StopSignals::kAcknowledgeAfter is acknowledged on stderr, once, and not
// before that time; one that it looks at in time is not. What the trainer, sample and eval do once
// they look is tested in test_resume.cpp and test_eval_cli.cpp; here, the words of how far a
// stopped loop came, and the progress line's rate before this process has run a unit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "host/progress.hpp"
#include "host/signals.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

using Clock = std::chrono::steady_clock;

// Standard error sent to a file for a scope (the watcher thread writes to file descriptor 2).
class StderrToFile {
 public:
  explicit StderrToFile(const std::filesystem::path& path) : path_(path) {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    const int file = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved_ < 0 || file < 0 || dup2(file, STDERR_FILENO) < 0) {
      throw std::runtime_error("cannot send stderr to " + path.string());
    }
    close(file);
  }
  ~StderrToFile() {
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
  }
  StderrToFile(const StderrToFile&) = delete;
  StderrToFile& operator=(const StderrToFile&) = delete;

  std::string text() const { return read_file(path_); }

 private:
  std::filesystem::path path_;
  int saved_ = -1;
};

// The acknowledgement says what a second signal does: SIGINT's (and SIGTERM's) kills at once, a
// second SIGHUP does not (a closed terminal sends two), and the program lives through it.
TEST(StopSignals, ASignalNotLookedAtIsAcknowledgedOnceAfterTheDelay) {
  // A test runner under nohup ignores SIGHUP, one started in the background by a shell without
  // job control (`rbm_tests &` in a script: the device check's shards) ignores SIGINT, and
  // StopSignals leaves an ignored signal so: the default action for the test, restored however
  // it ends.
  struct RestoreAction {
    int signal_number;
    sighandler_t before;
    ~RestoreAction() { std::signal(signal_number, before); }
  };
  const RestoreAction restore_interrupt{SIGINT, std::signal(SIGINT, SIG_DFL)};
  const RestoreAction restore_hangup{SIGHUP, std::signal(SIGHUP, SIG_DFL)};
  for (const int signal_number : {SIGINT, SIGHUP}) {
    SCOPED_TRACE(signal_name(signal_number));
    const test::TempDir dir;
    const StderrToFile err(dir / "stderr.txt");
    const StopSignals signals("rbm_test", "what it does next", ", and more");
    const Clock::time_point raised = Clock::now();
    ASSERT_EQ(raise(signal_number), 0);  // the handler runs in this thread before raise returns
    if (signal_number == SIGHUP) {
      ASSERT_EQ(raise(SIGHUP), 0);  // still handled, not fatal
    }
    // A loaded machine may delay the watcher, never hasten it: wait up to a minute.
    while (err.text().empty() && Clock::now() - raised < std::chrono::seconds(60)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const Clock::duration waited = Clock::now() - raised;
    EXPECT_GE(waited, StopSignals::kAcknowledgeAfter);
    const std::string line = signal_number == SIGHUP
                                 ? "rbm_test: SIGHUP received; what it does next; a second SIGHUP "
                                   "does not stop it sooner (SIGTERM twice does)\n"
                                 : "rbm_test: SIGINT received; what it does next; the same signal "
                                   "again kills it at once, and more\n";
    EXPECT_EQ(err.text(), line);
    EXPECT_EQ(signals.received(), signal_number);
    // Once: the watcher has ended (ten of its looks).
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_EQ(err.text(), line);
  }
}

TEST(StopSignals, ASignalLookedAtInTimeIsNotAcknowledged) {
  const test::TempDir dir;
  const StderrToFile err(dir / "stderr.txt");
  const StopSignals signals("rbm_test", "what it does next");
  ASSERT_EQ(raise(SIGTERM), 0);
  EXPECT_EQ(signals.received(), SIGTERM);
  // Twice the delay: an acknowledgement would have come (the first test shows it does).
  std::this_thread::sleep_for(2 * StopSignals::kAcknowledgeAfter);
  EXPECT_EQ(err.text(), "");
}

// Left by an exception (a run failing on a full disk, on its way to print why and exit 2), the
// handlers stay: a SIGTERM in that gap is recorded, not the default action's silent death with 143
// (exploratory tester). Left normally, the old action is back.
TEST(StopSignals, AFailureLeavesTheHandlersForItsLastLine) {
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  sigemptyset(&defaults.sa_mask);
  ASSERT_EQ(sigaction(SIGTERM, &defaults, nullptr), 0);
  try {
    const StopSignals signals("rbm_test", "what it does next");
    throw std::runtime_error("no space left on device");
  } catch (const std::runtime_error&) {
    struct sigaction kept {};
    ASSERT_EQ(sigaction(SIGTERM, nullptr, &kept), 0);
    EXPECT_NE(kept.sa_handler, SIG_DFL);
    ASSERT_EQ(raise(SIGTERM), 0);  // would end this test process under the default action
  }
  struct sigaction now {};
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);  // one-shot (SA_RESETHAND): a second SIGTERM kills
  { const StopSignals signals("rbm_test", "what it does next"); }
  ASSERT_EQ(sigaction(SIGTERM, nullptr, &now), 0);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

// The line of a stopped loop (and a progress line): the percentage rounded down (a stop near the
// end is not "100%"), the counts with enough digits to tell the part from the whole.
TEST(DoneText, SaysHowFarAStoppedLoopCame) {
  EXPECT_EQ(done_text(930'000'000, 3'000'000'000, "the sampling", "chain-steps"),
            "31% of the sampling (9.3e+08 of 3e+09 chain-steps)");
  EXPECT_EQ(done_text(9'995'000, 10'000'000, "the start states made", "chains"),
            "99% of the start states made (9.995e+06 of 1e+07 chains)");
  EXPECT_EQ(done_text(2'999'999'999, 3'000'000'000, "the sampling", "chain-steps"),
            "99% of the sampling (2999999999 of 3000000000 chain-steps)");
  EXPECT_EQ(done_text(0, 7, "log Z", "states"), "0% of log Z (0 of 7 states)");
  EXPECT_EQ(done_text(7, 7, "log Z", "states"), "100% of log Z (7 of 7 states)");
  // The progress lines' percentage too, in integers: 0.29 * 100 in floating point floors to 28.
  EXPECT_EQ(percent_done(29, 100), 29);
  EXPECT_EQ(percent_done(870'000, 3'000'000), 29);
  EXPECT_EQ(percent_done(2'996'771, 3'000'000), 99);
  EXPECT_EQ(percent_done(10'000'000'000'000'000 - 1, 10'000'000'000'000'000), 99);
  EXPECT_EQ(percent_done(0, 0), 100);
}

// A resumed run's first progress line (its recomputed metrics row, before it has run an
// iteration) has no rate yet: "-", not "0 it/s", which read as a stalled run (exploratory tester).
// The next line, after units done in this process, has one.
TEST(Progress, NoRateBeforeTheFirstUnitOfThisProcess) {
  const test::TempDir dir;
  {
    const StderrToFile err(dir / "stderr.txt");
    Progress progress("train", 3000, 1000);
    ASSERT_FALSE(progress.interactive());  // a file
    progress.update(1000, "recon 0.04");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    progress.update(1500, "");
  }
  const std::vector<std::string> lines = test::file_lines(dir / "stderr.txt");
  ASSERT_EQ(lines.size(), 2u) << read_file(dir / "stderr.txt");
  EXPECT_EQ(lines[0], "train 1000/3000 (33%) - it/s recon 0.04");
  EXPECT_EQ(lines[1].rfind("train 1500/3000 (50%) ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[1].find(" - it/s"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find(" it/s"), std::string::npos) << lines[1];
}

// The interactive line: a 20-character bar where the line fits, a narrower one (down to none)
// where the terminal is too narrow for it and the numbers, whose rate keeps its unit; only then is
// the text after them cut.
TEST(Progress, TheBarGivesWayToTheNumbersOnANarrowTerminal) {
  const std::string numbers = "1.81e+06/1e+09   0% ETA 2154.8s 4.63e+05 chain-steps/s";
  EXPECT_EQ(bar_line("sample", 0.5, "3/6  50% ETA 1.0s 3 it/s", "recon 0.1", 80),
            "sample [##########..........] 3/6  50% ETA 1.0s 3 it/s recon 0.1");
  // 7 + 54 characters without a bar: at 80 columns (79 usable) a bar of 15, at 69 of 4.
  EXPECT_EQ(bar_line("sample", 0.25, numbers, "", 80), "sample [###............] " + numbers);
  EXPECT_EQ(bar_line("sample", 0.25, numbers, "", 69), "sample [#...] " + numbers);
  EXPECT_EQ(bar_line("sample", 0.25, numbers, "", 64), "sample " + numbers);  // no room for "[]"
  EXPECT_EQ(bar_line("sample", 0.25, numbers, "", 40), ("sample " + numbers).substr(0, 39));
}

// A count and its total in one format: 1.81e+06/1e+09, not 1806336/1e+09 (second exploratory
// tester); whole numbers below ten million.
TEST(Progress, ACountAndItsTotalShareAFormat) {
  const test::TempDir dir;
  {
    const StderrToFile err(dir / "stderr.txt");
    Progress big("sample", 1'000'000'000, 0, "chain-steps");
    big.update(1'806'336, "");
    Progress small("sample", 600'000, 0, "steps");
    small.update(20'000, "");
  }
  const std::vector<std::string> lines = test::file_lines(dir / "stderr.txt");
  ASSERT_EQ(lines.size(), 2u) << read_file(dir / "stderr.txt");
  EXPECT_EQ(lines[0].rfind("sample 1.81e+06/1e+09 (0%) ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("sample 20000/600000 (3%) ", 0), 0u) << lines[1];
}

TEST(StopSignals, NoSignalNoMessage) {
  const test::TempDir dir;
  const StderrToFile err(dir / "stderr.txt");
  {
    const StopSignals signals("rbm_test", "what it does next");
    std::this_thread::sleep_for(2 * StopSignals::kAcknowledgeAfter);
    EXPECT_EQ(signals.received(), 0);
  }
  EXPECT_EQ(err.text(), "");
}

}  // namespace
}  // namespace rbm
