// The rbm_cuda executable: without a usable device it exits 2 with one line that names rbm_cpu;
// with one it trains, writes the same files as rbm_cpu, and its model is rbm_cpu's on the same
// flags within the tolerance between the builds.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "host/checkpoint.hpp"
#include "host/dataset.hpp"
#include "host/model.hpp"
#include "host/model_io.hpp"
#include "tests/cd_reference.hpp"
#include "tests/cli_runner.hpp"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

std::string cuda_exe() { return test::path_from_env_or("RBM_CUDA_EXE", RBM_CUDA_EXE); }
std::string cpu_exe() { return test::path_from_env_or("RBM_CPU_EXE", RBM_CPU_EXE); }
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

// --engine picks the single-sample trainer: with the minibatch path (a new run's flags, or the
// ones a resumed run recorded) it is refused before any device is looked for, so this runs
// everywhere, and nothing is written.
TEST(CudaCli, EngineWithTheMinibatchPathIsRefused) {
  const test::TempDir dir;
  const std::string refusal =
      "picks the single-sample trainer (--batch 1 CD-k), and this run "
      "trains on the minibatch path";
  for (const char* engine : {"fused", "gemv"}) {
    SCOPED_TRACE(engine);
    const test::CommandResult result =
        test::run_command(cuda_exe(), {"--iters", "10", "--data", mnist_dir(), "--batch", "10",
                                       "--engine", engine, "--out", (dir / "new").string()});
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_EQ(test::line_count(result.output), 1) << result.output;
    EXPECT_NE(result.output.find(refusal), std::string::npos) << result.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "new"));
  }
  // The engine's name is checked first: an unknown one, and rbm_cpu's refusal of any.
  const test::CommandResult unknown = test::run_command(
      cuda_exe(), {"--iters", "10", "--data", mnist_dir(), "--batch", "10", "--engine", "warp"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("--engine must be gemv or fused (got 'warp')"), std::string::npos)
      << unknown.output;
  const test::CommandResult cpu = test::run_command(
      cpu_exe(), {"--iters", "10", "--data", mnist_dir(), "--batch", "10", "--engine", "gemv"});
  EXPECT_EQ(cpu.exit_code, 2) << cpu.output;
  EXPECT_NE(cpu.output.find("rbm_cpu has one engine"), std::string::npos) << cpu.output;
  // A PCD run made by rbm_cpu, resumed by rbm_cuda with --engine.
  const std::filesystem::path run = dir / "pcd";
  const test::CommandResult made = test::run_command(
      cpu_exe(),
      {"--iters", "2", "--hidden", "5", "--pcd", "--data", mnist_dir(), "--out", run.string()});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  const std::string run_json = read_file(run / "run.json");
  const test::CommandResult resumed = test::run_command(
      cuda_exe(), {"--resume", run.string(), "--iters", "4", "--engine", "fused"});
  EXPECT_EQ(resumed.exit_code, 2) << resumed.output;
  EXPECT_NE(resumed.output.find(refusal), std::string::npos) << resumed.output;
  EXPECT_EQ(read_file(run / "run.json"), run_json);
}

TEST(CudaCli, TrainsAndWritesTheRunDirectoryWithEitherEngine) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::string fused_unusable = test::fused_unusable_reason(784, 100);
  for (const char* engine : {"gemv", "fused"}) {
    SCOPED_TRACE(engine);
    if (std::string(engine) == "fused" && !fused_unusable.empty()) continue;
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
  if (!fused_unusable.empty()) RBM_SKIP_FUSED(fused_unusable);
}

// Without --engine, rbm_cuda trains with fused where the device and the model allow it (run.json's
// device names the variant) and with gemv where they do not: a W of 784 x 1500 (4.7 MB), which no
// variant's cluster holds in shared memory (at most 16 x 227 KB), trains, as --engine gemv would,
// where --engine fused is refused (as AFirstUpdateThatCannotRunRemovesTheNewRunDirectory shows).
TEST(CudaCli, TheDefaultEngineIsFusedWhereItCanRunAndGemvElsewhere) {
  RBM_REQUIRE_CUDA_DEVICE();
  const auto device_of = [](const std::vector<std::string>& flags) {
    const test::TempDir dir;
    const std::filesystem::path out = dir / "run";
    std::vector<std::string> args = {"--iters", "2", "--data", mnist_dir(), "--out", out.string()};
    args.insert(args.end(), flags.begin(), flags.end());
    const test::CommandResult result = test::run_command(cuda_exe(), args);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return nlohmann::json::parse(read_file(out / "run.json")).value("device", std::string());
  };
  EXPECT_NE(test::fused_unusable_reason(784, 1500), "");
  const std::string large = device_of({"--hidden", "1500"});
  EXPECT_EQ(large.find("fused engine"), std::string::npos) << large;
  const std::string fused_unusable = test::fused_unusable_reason(784, 100);
  if (!fused_unusable.empty()) RBM_SKIP_FUSED(fused_unusable);
  const FusedVariant variant = fused_product_variant(784, 100);
  const std::string reference = device_of({});
  EXPECT_NE(reference.find("fused engine on clusters of " + std::to_string(variant.cluster_ctas) +
                           " CTAs x " + std::to_string(variant.threads) + " threads"),
            std::string::npos)
      << reference;
  const std::string gemv = device_of({"--engine", "gemv"});
  EXPECT_EQ(gemv.find("fused engine"), std::string::npos) << gemv;
}

// A new run whose first update cannot run is refused there, after its iteration-0 checkpoint:
// exit 2, one line that names the flag, and the directory it made is removed again
// (host/trainer.cpp), so that the corrected command can take the same --out. The cases: PCD chains
// the device cannot hold (1e8 chains: about 350 GB), and a model whose W the fused kernel's
// cluster cannot hold in shared memory (H 20000: 62.7 MB of W).
TEST(CudaCli, AFirstUpdateThatCannotRunRemovesTheNewRunDirectory) {
  RBM_REQUIRE_CUDA_DEVICE();
  const struct {
    std::vector<std::string> flags;
    const char* named;
  } cases[] = {{{"--pcd", "--batch", "10", "--chains", "1e8"}, "--chains"},
               {{"--engine", "fused", "--hidden", "20000"}, "--engine fused: "}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.named);
    const test::TempDir dir;
    const std::filesystem::path out = dir / "run";
    std::vector<std::string> args = c.flags;
    for (const std::string& arg :
         std::vector<std::string>{"--iters", "2", "--data", mnist_dir(), "--out", out.string()}) {
      args.push_back(arg);
    }
    const test::CommandResult result = test::run_command(cuda_exe(), args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_EQ(test::line_count(result.output), 1) << result.output;
    EXPECT_NE(result.output.find(c.named), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("was removed"), std::string::npos) << result.output;
    EXPECT_FALSE(std::filesystem::exists(out)) << result.output;
  }
}

// The headline command, rbm_cuda against rbm_cpu: the default recipe on MNIST threes (digit 3,
// both splits), 50 iterations from the same seed, with either engine. The seed is the first from
// 20240 on whose CPU trajectory every draw keeps tests/cd_reference.hpp's kMargin from its
// probability, so the builds part only through float summation order and the saved W and b are
// held to kTrainRelTol (that header says why it separates rounding from a wrong draw by two orders
// of magnitude each way). What this adds to CudaBackend.MatchesCpuOnMnistThrees: the flags, the
// data loading, init_params and the checkpoint the executables write.
TEST(CudaCli, ModelEqualsRbmCpusOnTheSameFlags) {
  RBM_REQUIRE_CUDA_DEVICE();
  constexpr int64_t kIterations = 50;
  Recipe recipe;  // the command line's defaults (host/cli.cpp): H 100, lr 0.005, CD-3
  recipe.seed = 20240;
  const Dataset threes = load_mnist(mnist_dir(), 3, Split::all);
  recipe.seed = test::seed_clear_of_ties(threes, recipe, kIterations);
  const test::TempDir dir;
  const auto train = [&](const std::string& exe, const std::string& name,
                         std::vector<std::string> extra) {
    std::vector<std::string> args = {"--iters", std::to_string(kIterations),
                                     "--seed",  std::to_string(recipe.seed),
                                     "--data",  mnist_dir(),
                                     "--out",   (dir / name).string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const test::CommandResult result = test::run_command(exe, args);
    EXPECT_EQ(result.exit_code, 0) << name << ": " << result.output;
    return load_checkpoint(dir / name).params;
  };
  const Params want = train(cpu_exe(), "cpu", {});
  const Params start = init_params(recipe, threes);
  ASSERT_GT(test::max_abs_diff(want.W, start.W), 0.0) << "rbm_cpu did not train";
  const std::string fused_unusable = test::fused_unusable_reason(784, recipe.hidden);
  for (const char* engine : {"gemv", "fused"}) {
    SCOPED_TRACE(engine);
    if (std::string(engine) == "fused" && !fused_unusable.empty()) continue;
    const Params got = train(cuda_exe(), engine, {"--engine", engine});
    ASSERT_EQ(got.W.size(), want.W.size());
    ASSERT_EQ(got.b.size(), want.b.size());
    EXPECT_TRUE(got.a.empty());
    const test::TrainedDifference diff = test::trained_difference(got, want, recipe);
    EXPECT_LE(diff.W, test::kTrainRelTol);
    EXPECT_LE(diff.b, test::kTrainRelTol);
  }
  if (!fused_unusable.empty()) RBM_SKIP_FUSED(fused_unusable);
}

// `sample`'s mixing line (host/mixing.hpp) is computed on the host from the chains' states, so
// rbm_cuda prints rbm_cpu's verdict, and its R-hat within 0.01: the two builds' chains are the same
// up to draws within rounding of their threshold (a few in millions), each changing a pixel of a
// chain until it is drawn again, a few of the 5120 free energies read by at most |a_i| + sum_j
// |W_ij| (|a_i| for W = 0, 12 for the two modes). W = 0 (independent draws) and W = 8 with integer
// sums (two modes no chain leaves).
TEST(CudaCli, SampleJudgesMixingAsRbmCpuDoes) {
  RBM_REQUIRE_CUDA_DEVICE();
  const test::TempDir dir;
  for (const auto& [name, params] : {std::pair{"independent", test::independent_pixels_model()},
                                     {"two_modes", test::two_mode_model(-60.0f)}}) {
    SCOPED_TRACE(name);
    std::filesystem::create_directories(dir / name);
    write_model(dir / name, params);
    std::string lines[2];
    double r_hat[2];
    for (int build = 0; build < 2; ++build) {
      const test::CommandResult result = test::run_command(
          build == 0 ? cpu_exe() : cuda_exe(),
          {"sample", (dir / name).string(), "--chains", "256", "--steps", "300", "--out",
           (dir / (name + std::string(build == 0 ? "_cpu.npy" : "_cuda.npy"))).string()});
      ASSERT_EQ(result.exit_code, 0) << result.output;
      ASSERT_EQ(test::line_count(result.output), 2) << result.output;
      lines[build] = result.output.substr(result.output.find('\n') + 1);
      const size_t is = lines[build].find(" is ");
      ASSERT_NE(is, std::string::npos) << lines[build];
      r_hat[build] = std::stod(lines[build].substr(is + 4));
    }
    EXPECT_EQ(lines[0].substr(0, lines[0].find(" is ")), lines[1].substr(0, lines[1].find(" is ")));
    EXPECT_NEAR(r_hat[1], r_hat[0], 0.01) << lines[0] << lines[1];
    EXPECT_EQ(lines[0].starts_with("note:"), std::string(name) == "two_modes") << lines[0];
  }
}

}  // namespace
}  // namespace rbm
