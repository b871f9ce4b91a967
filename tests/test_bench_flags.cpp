// The benchmarks' flag parser (bench/flags.hpp): integer flags take exactly an integer in their
// range, and a refused value, an unknown flag or a flag given twice makes parse_flags return
// false. And bench_recipe's scratch directory under a stop signal.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/flags.hpp"
#include "tests/child_process.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

bool parse(std::vector<std::string> args, const std::vector<bench::Flag>& flags) {
  args.insert(args.begin(), "bench_test");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  return bench::parse_flags(static_cast<int>(argv.size()), argv.data(), flags,
                            "bench_test [--iters N] [--quick]");
}

TEST(BenchFlags, IntegerFlagsTakeExactlyAnIntegerInRange) {
  int64_t iters = 7;
  bool quick = false;
  const std::vector<bench::Flag> flags = {bench::int_flag<int64_t>("--iters", iters, 1, 1000),
                                          bench::switch_flag("--quick", [&] { quick = true; })};
  EXPECT_TRUE(parse({"--iters", "250", "--quick"}, flags));
  EXPECT_EQ(iters, 250);
  EXPECT_TRUE(quick);
  EXPECT_TRUE(parse({"--iters", "1000"}, flags));
  EXPECT_EQ(iters, 1000);
  // As the trainer's flags: scientific notation of an exact integer too.
  EXPECT_TRUE(parse({"--iters", "2.5e2"}, flags));
  EXPECT_EQ(iters, 250);
  EXPECT_TRUE(parse({"--iters", "1e3"}, flags));
  EXPECT_EQ(iters, 1000);
  for (const char* bad :
       {"0", "-3", "1001", "10x", "", " 5", "abc", "1.5", "2e3", "0x10", "99999999999999999999"}) {
    EXPECT_FALSE(parse({"--iters", bad}, flags)) << "'" << bad << "'";
    EXPECT_EQ(iters, 1000) << "a refused value must not change the flag: '" << bad << "'";
  }
  EXPECT_FALSE(parse({"--iters"}, flags));         // no value
  EXPECT_FALSE(parse({"--repeats", "3"}, flags));  // not a flag
  // Given twice: refused (the last one had won), a switch too.
  EXPECT_FALSE(parse({"--iters", "100", "--iters", "200"}, flags));
  EXPECT_EQ(iters, 100);
  EXPECT_FALSE(parse({"--quick", "--quick"}, flags));
}

// bench_main: --help prints the usage line and exits 0 without running; a bad flag exits 2 without
// running; otherwise run()'s code, and an exception out of it is exit code 2.
TEST(BenchFlags, BenchMainExitCodes) {
  int64_t iters = 7;
  const std::vector<bench::Flag> flags = {bench::int_flag<int64_t>("--iters", iters, 1, 1000)};
  const auto main_with = [&](std::vector<std::string> args, const std::function<int()>& run) {
    args.insert(args.begin(), "bench_test");
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    return bench::bench_main(static_cast<int>(argv.size()), argv.data(), flags,
                             "bench_test [--iters N]", run);
  };
  int runs = 0;
  const auto run = [&] {
    ++runs;
    return 0;
  };
  EXPECT_EQ(main_with({"--help"}, run), 0);
  EXPECT_EQ(main_with({"--iters", "5", "-h"}, run), 0);
  EXPECT_EQ(main_with({"--iters", "0"}, run), 2);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(main_with({"--iters", "5"}, run), 0);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(iters, 5);
  EXPECT_EQ(main_with({}, [] { return 3; }), 3);
  EXPECT_EQ(main_with({}, []() -> int { throw std::runtime_error("no data"); }), 2);

  // A standard output that cannot take the table (here /dev/full): exit 2, not 0 with the numbers
  // lost. This process's stdout is pointed there for the call, then restored.
  std::fflush(stdout);
  const int saved = dup(STDOUT_FILENO);
  const int full = open("/dev/full", O_WRONLY);
  ASSERT_GE(saved, 0);
  ASSERT_GE(full, 0);
  dup2(full, STDOUT_FILENO);
  const int code = main_with({}, [] {
    std::printf("a row of the table\n");
    return 0;
  });
  std::fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(full);
  close(saved);
  std::clearerr(stdout);
  EXPECT_EQ(code, 2);
}

// A quoted word reaches the program as the text itself, through a real shell: spaces, quotes,
// $ and backslashes included.
TEST(BenchFlags, ShellQuoteKeepsAWordWhole) {
  for (const std::string& text :
       {std::string("plain"), std::string("with space"), std::string("it's"),
        std::string("'both' \"quotes\""), std::string("$HOME `x` \\n *"), std::string()}) {
    const std::string command = "printf '%s' " + bench::shell_quote(text);
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string got;
    char buffer[256];
    while (const size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) got.append(buffer, n);
    EXPECT_EQ(pclose(pipe), 0);
    EXPECT_EQ(got, text) << command;
  }
}

// bench_recipe times whole rbm_cpu commands with --out in a scratch directory of its own; stopped
// meanwhile (SIGTERM), it lets the command in progress end, removes the directory, and then ends
// by the signal (the directory was left in TMPDIR: exploratory tester). It catches SIGTERM only
// while the directory exists, so catching it is the moment to send it.
TEST(BenchRecipe, AStopSignalRemovesItsScratchDirectory) {
  const test::TempDir tmp;
  const char* saved = std::getenv("TMPDIR");
  const std::string saved_tmpdir = saved != nullptr ? saved : "";
  setenv("TMPDIR", tmp.path().c_str(), 1);
  test::ChildProcess bench(
      RBM_BENCH_RECIPE_EXE,
      {"--iters", "2000", "--repeats", "3", "--data", RBM_MNIST_DIR, "--split", "test"},
      tmp / "bench.log");
  if (saved != nullptr) {
    setenv("TMPDIR", saved_tmpdir.c_str(), 1);
  } else {
    unsetenv("TMPDIR");
  }
  ASSERT_TRUE(bench.wait_until_it_catches(SIGTERM)) << read_file(tmp / "bench.log");
  std::vector<std::string> during;
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    during.push_back(entry.path().filename().string());
  }
  bench.signal(SIGTERM);
  bench.wait();
  EXPECT_EQ(bench.killed_by(), SIGTERM) << read_file(tmp / "bench.log");
  EXPECT_EQ(during.size(), 2u);  // the log and the scratch directory
  for (const auto& entry : std::filesystem::directory_iterator(tmp.path())) {
    EXPECT_EQ(entry.path().filename(), "bench.log") << "left behind";
  }
}

}  // namespace
}  // namespace rbm
