// The rbm_cuda executable: without a usable device it exits 2 with one line that names rbm_cpu;
// with one it trains and writes the same files as rbm_cpu.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/cli_runner.hpp"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

std::string cuda_exe() { return test::path_from_env_or("RBM_CUDA_EXE", RBM_CUDA_EXE); }
std::string mnist_dir() { return test::path_from_env_or("RBM_MNIST_DIR", RBM_MNIST_DIR); }

// Runs where no device is usable (CI); where one is, the next test covers the executable.
TEST(CudaCli, WithoutDeviceExitsTwoNamingTheCpuBuild) {
  if (test::cuda_unusable_reason().empty()) GTEST_SKIP() << "a CUDA device is usable here";
  const test::TempDir dir;
  const test::CommandResult result = test::run_command(
      cuda_exe(), {"--iters", "10", "--data", mnist_dir(), "--out", (dir / "run").string()});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_EQ(test::line_count(result.output), 1) << result.output;
  EXPECT_NE(result.output.find("rbm_cpu"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(test::cuda_unusable_reason()), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "run" / "W.npy"));
}

// An unknown --engine is refused before any device is looked for, so this runs everywhere.
TEST(CudaCli, UnknownEngineIsRefusedWithOneLine) {
  const test::TempDir dir;
  const test::CommandResult result =
      test::run_command(cuda_exe(), {"--iters", "10", "--data", mnist_dir(), "--engine", "warp",
                                     "--out", (dir / "run").string()});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_EQ(test::line_count(result.output), 1) << result.output;
  EXPECT_NE(result.output.find("--engine must be gemv or fused (got 'warp')"), std::string::npos)
      << result.output;
}

TEST(CudaCli, TrainsAndWritesTheRunDirectoryWithEitherEngine) {
  RBM_REQUIRE_CUDA_DEVICE();
  for (const char* engine : {"gemv", "fused"}) {
    SCOPED_TRACE(engine);
    const test::TempDir dir;
    const std::filesystem::path out = dir / "run";
    const test::CommandResult result = test::run_command(
        cuda_exe(),
        {"--iters", "200", "--data", mnist_dir(), "--engine", engine, "--out", out.string()});
    ASSERT_EQ(result.exit_code, 0) << result.output;
    for (const char* name : {"W.npy", "b.npy", "weights.png", "metrics.csv", "run.json"}) {
      EXPECT_TRUE(std::filesystem::is_regular_file(out / name)) << name << "\n" << result.output;
    }
  }
}

}  // namespace
}  // namespace rbm
