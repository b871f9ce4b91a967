// rbm_cpu's command line: bad values are refused with one line and exit code 2; a real run
// writes the run directory, whose files load back.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "host/atomic_file.hpp"
#include "host/model_io.hpp"
#include "host/npy.hpp"
#include "host/png_image.hpp"
#include "host/simd.hpp"
#include "host/version.hpp"
#include "tests/cli_runner.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

test::CommandResult run_cpu(const std::vector<std::string>& args) {
  return test::run_command(RBM_CPU_EXE, args);
}

TEST(Cli, HelpListsTheFlags) {
  const test::CommandResult r = run_cpu({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("\nUsage: rbm_cpu [train] [OPTIONS]\n"), std::string::npos) << r.output;
  for (const char* flag : {"--iters", "--hidden", "--lr", "--k", "--seed", "--data", "--digit",
                           "--split", "--visible-bias", "--init-std", "--log-every", "--out"}) {
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag;
  }
  // --engine is rbm_cuda's: rbm_cpu refuses it, and its help says so.
  const size_t engine = r.output.find("--engine");
  ASSERT_NE(engine, std::string::npos) << r.output;
  EXPECT_NE(r.output.substr(engine, r.output.find('\n', engine) - engine).find("rbm_cuda only"),
            std::string::npos)
      << r.output;
  // Every value is named for what it is (N, X, DIR, ...), never CLI11's TEXT, in each command.
  EXPECT_NE(r.output.find("--iters N=25000"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--lr R=0.005"), std::string::npos) << r.output;
  for (const std::vector<std::string>& help : {std::vector<std::string>{"--help"},
                                               {"eval", "--help"},
                                               {"sample", "--help"},
                                               {"mosaic", "--help"}}) {
    const std::string text = run_cpu(help).output;
    EXPECT_EQ(text.find("TEXT"), std::string::npos) << text;
  }
}

TEST(Cli, BadValuesGetOneLineAndExitCode2) {
  const std::vector<std::vector<std::string>> cases = {
      {"--iters", "0"},
      {"--iters", "-5"},
      {"--iters", "abc"},
      {"--iters", "1e99"},
      {"--hidden", "0"},
      {"--hidden", "-3"},
      {"--hidden", "9999999"},
      {"--lr", "nan"},
      {"--lr", "-0.1"},
      {"--lr", "0"},
      {"--lr", "inf"},
      {"--lr", "fast"},
      {"--k", "0"},
      {"--seed", "-1"},
      {"--seed", "4294967296"},
      {"--digit", "11"},
      {"--digit", "three"},
      {"--split", "validation"},
      {"--init-std", "nan"},
      {"--init-std", "-1"},
      {"--log-every", "0"},
      {"--engine", "fused"},  // rbm_cuda's; rbm_cpu has one engine
      {"--engine", "gemv"},
      {"--bogus", "1"},
      {"train", "--iters", "0"},
  };
  for (const auto& args : cases) {
    const test::CommandResult r = run_cpu(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.output;
    EXPECT_EQ(test::line_count(r.output), 1) << r.output;
    const std::string& flag = args[0] == "train" ? args[1] : args[0];
    EXPECT_NE(r.output.find(flag), std::string::npos)
        << "message should name " << flag << ": " << r.output;
  }
}

// A misspelt command is named as such, with the commands there are (CLI11 alone listed the words
// as unexpected arguments, in reverse order).
TEST(Cli, AnUnknownCommandIsNamed) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"Eval", "runs/x"}, {"help"}, {"train", "sample2"}}) {
    const test::CommandResult r = run_cpu(args);
    const std::string word = args[0] == "train" ? args[1] : args[0];
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output, "rbm_cpu: '" + word +
                            "' is not a command: the commands are train (the default), eval, "
                            "sample and mosaic (see --help)\n");
  }
}

// `train` names the default command; another command after it is refused, not run (`train eval
// DIR` ran eval).
TEST(Cli, TrainFollowedByAnotherCommandIsRefused) {
  for (const std::string command : {"eval", "sample", "mosaic", "train"}) {
    const test::CommandResult r = run_cpu({"train", command, "runs/x"});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output, "rbm_cpu train: takes flags, not another command ('" + command +
                            "'): one command a run\n");
  }
}

// CLI11's own messages, in plain words: a flag without a value (or with an empty one after '='),
// and unexpected words in the order they were given (CLI11 lists them reversed).
TEST(Cli, ParseErrorsInPlainWords) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--iters"}, "rbm_cpu: --iters: no value given (see --help)\n"},
      {{"--iters="}, "rbm_cpu: --iters: empty value (see --help)\n"},
      {{"eval", "model", "--seed="}, "rbm_cpu eval: --seed: empty value (see --help)\n"},
      {{"eval", "model", "one", "two"},
       "rbm_cpu eval: The following arguments were not expected: one two (see --help)\n"},
  };
  // No model directory: the positional is how it is mostly given, not only --model (which CLI11
  // named alone).
  for (const std::string command : {"eval", "sample", "mosaic"}) {
    const test::CommandResult r = run_cpu({command});
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output,
              "rbm_cpu " + command +
                  ": a model directory is required, as DIR or --model DIR (see --help)\n");
  }
  for (const auto& [args, message] : cases) {
    const test::CommandResult r = run_cpu(args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(r.output, message);
  }
}

TEST(Cli, MissingDataSaysHowToFetchIt) {
  const test::CommandResult r = run_cpu({"--data", "/nonexistent/mnist", "--iters", "10"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("scripts/fetch_mnist"), std::string::npos) << r.output;
  EXPECT_EQ(test::line_count(r.output), 1) << r.output;
  // A file given as --data is named as one, not as missing.
  const test::TempDir dir;
  write_file_atomic(dir / "train-images-idx3-ubyte", "not a directory");
  const test::CommandResult file =
      run_cpu({"--data", (dir / "train-images-idx3-ubyte").string(), "--iters", "10"});
  EXPECT_EQ(file.exit_code, 2);
  EXPECT_NE(
      file.output.find("train-images-idx3-ubyte: not a directory; point --data at the directory"),
      std::string::npos)
      << file.output;
  EXPECT_EQ(test::line_count(file.output), 1) << file.output;
}

TEST(Cli, UnwritableOutputDirectoryIsRefused) {
  test::TempDir dir;
  test::write_bytes(dir / "file", "not a directory");
  const test::CommandResult r =
      run_cpu({"--data", RBM_MNIST_DIR, "--iters", "10", "--out", (dir / "file" / "run").string()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;
}

// A new run with --init-std 0 says what it will not learn (an exploratory tester's ternary run
// trained for nothing): binary units stay alike (the saved W's columns are equal), ternary ones at
// W = 0, b = 0. One binary unit, a small --init-std and --resume say nothing.
TEST(Cli, InitStdZeroSaysWhatTheRunWillNotLearn) {
  const test::TempDir dir;
  const auto train = [&](const std::string& out, const std::vector<std::string>& more) {
    std::vector<std::string> args = {"--data",      RBM_MNIST_DIR, "--iters", "50",
                                     "--log-every", "50",          "--out",   (dir / out).string()};
    args.insert(args.end(), more.begin(), more.end());
    const test::CommandResult r = run_cpu(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  };
  const std::string binary = train("binary", {"--init-std", "0", "--hidden", "4"});
  EXPECT_NE(binary.find("rbm_cpu: note: --init-std 0 starts every hidden unit alike, and CD's "
                        "updates (of the units' probabilities) keep them alike: the 4 units will "
                        "learn one feature"),
            std::string::npos)
      << binary;
  const Params alike = read_model(dir / "binary");
  for (int i = 0; i < alike.visible; ++i) {
    for (int j = 1; j < alike.hidden; ++j) {
      ASSERT_EQ(alike.W[i * alike.hidden + j], alike.W[i * alike.hidden]) << i << ", " << j;
    }
  }
  const std::string ternary =
      train("ternary", {"--init-std", "0", "--hidden", "4", "--hidden-type", "ternary"});
  EXPECT_NE(ternary.find("rbm_cpu: note: --init-std 0 with ternary hidden units starts at W = 0, "
                         "b = 0, where CD's updates of W and b are 0"),
            std::string::npos)
      << ternary;
  const Params unmoved = read_model(dir / "ternary");
  EXPECT_EQ(unmoved.W, std::vector<float>(unmoved.W.size(), 0.0f));
  EXPECT_EQ(unmoved.b, std::vector<float>(unmoved.b.size(), 0.0f));
  for (const auto& [out, more] : {std::pair<std::string, std::vector<std::string>>{
                                      "one", {"--init-std", "0", "--hidden", "1"}},
                                  {"small", {"--init-std", "0.01", "--hidden", "4"}}}) {
    EXPECT_EQ(train(out, more).find("note"), std::string::npos) << out;
  }
  const test::CommandResult resumed =
      run_cpu({"--resume", (dir / "binary").string(), "--iters", "60"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("note"), std::string::npos) << resumed.output;
  // A command refused after all is one line: the note comes once the run starts (a reviewer saw
  // it printed above the refusals of --data and --out).
  const test::CommandResult refused =
      run_cpu({"--init-std", "0", "--data", (dir / "nowhere").string(), "--iters", "5"});
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_EQ(refused.output.find("note"), std::string::npos) << refused.output;
}

TEST(Cli, TrainingWritesTheRunDirectory) {
  test::TempDir dir;
  const std::filesystem::path out = dir / "run";
  const test::CommandResult r =
      run_cpu({"--data", RBM_MNIST_DIR, "--iters", "300", "--log-every", "100", "--split", "train",
               "--visible-bias", "--seed", "9", "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Params params = read_model(out);
  EXPECT_EQ(params.visible, 784);
  EXPECT_EQ(params.hidden, 100);
  EXPECT_TRUE(params.has_visible_bias());

  const std::string csv = read_file(out / "metrics.csv");
  EXPECT_EQ(test::line_count(csv), 4) << csv;  // header + iterations 100, 200, 300
  EXPECT_NE(csv.find("\n300,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(",,"), std::string::npos) << "held-out columns should be filled: " << csv;

  const nlohmann::json run = nlohmann::json::parse(read_file(out / "run.json"));
  EXPECT_EQ(run["iteration"], 300);
  EXPECT_EQ(run["recipe"]["seed"], 9);
  EXPECT_EQ(run["recipe"]["k"], 3);
  // Float flags as typed (the shortest decimal of the float), not widened to double.
  EXPECT_EQ(run["recipe"]["lr"].dump(), "0.005");
  EXPECT_EQ(run["recipe"]["init_std"].dump(), "0.1");
  EXPECT_EQ(run["data"]["rows"], 6131);
  EXPECT_NE(r.output.find("trained 300 iterations on 6131 images with cpu in "), std::string::npos)
      << r.output;
  EXPECT_EQ(run["data"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(run["backend"], "cpu");
  EXPECT_EQ(run["version"], version());
  EXPECT_EQ(run["git_commit"], git_commit());

  const GrayImage png = read_png_gray(out / "weights.png");
  const GrayImage mosaic = weight_mosaic(params);
  EXPECT_EQ(png.width, mosaic.width);
  EXPECT_EQ(png.height, mosaic.height);
  EXPECT_EQ(png.pixels, mosaic.pixels);
}

// RBM_CPU_SIMD chooses the CPU kernels' instructions for the whole command, run.json's device
// says so, and the model is the same bits whichever it chose (host/simd.hpp).
TEST(Cli, RbmCpuSimdChoosesTheInstructionsAndTrainsTheSameModel) {
  test::TempDir dir;
  const auto train = [&](const char* simd) {
    const std::filesystem::path out = dir / (std::string("run-") + (*simd ? simd : "default"));
    if (*simd) {
      setenv("RBM_CPU_SIMD", simd, 1);
    } else {
      unsetenv("RBM_CPU_SIMD");
    }
    const test::CommandResult r = run_cpu({"--data", RBM_MNIST_DIR, "--iters", "300", "--split",
                                           "train", "--visible-bias", "--out", out.string()});
    unsetenv("RBM_CPU_SIMD");
    EXPECT_EQ(r.exit_code, 0) << simd << ": " << r.output;
    return out;
  };
  const std::filesystem::path plain = train("");
  const std::string best = cpu::simd_name(cpu::simd());
  EXPECT_NE(read_file(plain / "run.json").find(", " + best + ", OpenBLAS"), std::string::npos);
  for (const auto& [name, simd] :
       {std::pair{"avx2", cpu::Simd::avx2}, std::pair{"avx512", cpu::Simd::avx512}}) {
    if (!cpu::simd_usable(simd)) continue;
    const std::filesystem::path out = train(name);
    const std::string device =
        nlohmann::json::parse(read_file(out / "run.json"))["device"].get<std::string>();
    EXPECT_NE(device.find(std::string(", ") + cpu::simd_name(simd) + " (RBM_CPU_SIMD), "),
              std::string::npos)
        << device;
    for (const char* file : {"W.npy", "b.npy", "a.npy"}) {
      EXPECT_EQ(read_file(out / file), read_file(plain / file)) << name << ": " << file;
    }
  }
}

// Without --out a run writes runs/<local time to the second>; when that name is taken (two runs
// started in the same second) it takes NAME-2, NAME-3, ... The test takes the names of this
// second and the next 30 with runs of their own, so the run under test (started within them)
// finds its name taken and must take the -2 of one.
TEST(Cli, DefaultRunDirectoryNamesDoNotCollide) {
  const test::TempDir dir;
  const auto name_at = [](std::time_t t) {
    std::tm local{};
    localtime_r(&t, &local);
    char text[32];
    std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
    return std::string(text);
  };
  const std::time_t now = std::time(nullptr);
  for (std::time_t t = now; t <= now + 30; ++t) {
    std::filesystem::create_directories(dir / "runs" / name_at(t));
    write_file_atomic(dir / "runs" / name_at(t) / "metrics.csv", "another run's\n");
  }
  const test::CommandResult r = test::run_command(
      "/bin/sh", {"-c", "cd " + test::shell_quote(dir.path().string()) + " && exec " +
                            test::shell_quote(RBM_CPU_EXE) + " --data " +
                            test::shell_quote(RBM_MNIST_DIR) + " --iters 20 --log-every 10"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int taken = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "runs")) {
    const std::string name = entry.path().filename().string();
    if (!name.ends_with("-2")) continue;
    ++taken;
    EXPECT_TRUE(std::filesystem::exists(entry.path() / "run.json")) << name;
    EXPECT_NE(r.output.find("wrote runs/" + name + ": "), std::string::npos) << r.output;
    // The run it stepped aside for is untouched.
    EXPECT_EQ(read_file(dir / "runs" / name.substr(0, name.size() - 2) / "metrics.csv"),
              "another run's\n");
  }
  EXPECT_EQ(taken, 1) << r.output;
}

TEST(Cli, VersionNamesTheCommitItWasBuiltFrom) {
  const test::CommandResult r = run_cpu({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, std::string(version()) + " (" + git_commit() + ")\n");
  // HEAD's 12 hex digits when built ("-dirty" when tracked files differed), else "unknown".
  std::string commit = git_commit();
  if (commit.ends_with("-dirty")) commit.resize(commit.size() - 6);
  EXPECT_TRUE(
      commit == "unknown" ||
      (commit.size() == 12 && commit.find_first_not_of("0123456789abcdef") == std::string::npos))
      << git_commit();
}

TEST(Cli, SameSeedGivesTheSameModel) {
  test::TempDir dir;
  for (const char* name : {"a", "b"}) {
    const test::CommandResult r = run_cpu(
        {"--data", RBM_MNIST_DIR, "--iters", "200", "--seed", "4", "--out", (dir / name).string()});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  EXPECT_EQ(read_npy(dir / "a" / "W.npy").data, read_npy(dir / "b" / "W.npy").data);
}

}  // namespace
}  // namespace rbm
