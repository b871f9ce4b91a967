// The CUDA backend's evaluation against the CPU reference: exact log Z by enumeration (one kernel,
// double), AIS run by run (same draws, so the same weights except where float rounding flips a
// draw), the refusal of AIS requests larger than the device's memory, and `rbm_cuda eval` against
// `rbm_cpu eval`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/model_io.hpp"
#include "kernels/cuda_backend.hpp"
#include "tests/cli_runner.hpp"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/test_util.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// Both sides enumerate the same 2^H terms in double; they differ in the order of the sums over
// the d units (lanes and shuffles against one loop) and where the Gray-code walks start, each a
// relative 1e-15 or so on terms of size ~|log Z|: 1e-9 absolute is far above that and far below
// any wrong term (a missing state, a float sum) could hide. Ternary models (3^H states, H <= 15)
// likewise: the device walks them in the reflected base-3 Gray code, the CPU in its own order.
TEST(CudaEval, ExactLogPartitionMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  struct Case {
    int d, H;
    float scale;
    bool visible_bias;
    HiddenType type = HiddenType::binary;
  };
  constexpr HiddenType kTernary = HiddenType::ternary;
  for (const Case& c : {Case{7, 1, 1.0f, true}, Case{7, 5, 1.0f, false}, Case{784, 12, 0.1f, false},
                        Case{784, 16, 0.3f, true}, Case{100, 20, 0.5f, true},
                        Case{784, 20, 0.1f, false}, Case{3000, 6, 0.2f, true},
                        Case{7, 1, 1.0f, true, kTernary}, Case{7, 5, 1.0f, false, kTernary},
                        Case{784, 8, 0.1f, false, kTernary}, Case{784, 12, 0.1f, true, kTernary},
                        Case{16, 15, 0.3f, true, kTernary}, Case{3000, 4, 0.2f, true, kTernary}}) {
    SCOPED_TRACE("d = " + std::to_string(c.d) + ", H = " + std::to_string(c.H) + ", " +
                 hidden_type_name(c.type));
    Params p = test::random_params(c.d, c.H, c.scale, 100 + c.H, c.visible_bias);
    p.hidden_type = c.type;
    gpu->set_params(p);
    cpu->set_params(p);
    const double want = cpu->exact_log_partition();
    EXPECT_NEAR(gpu->exact_log_partition(), want, 1e-9 * std::max(1.0, std::fabs(want)));
  }
}

// Per-run AIS weights of the two backends. A run's weight is the same function of the same draws
// on both; float rounding (cuBLAS sums in another order than the CPU's row sums, ~1e-6 in a
// pre-activation) moves a weight by ~1e-6 per unit of beta, far under kSameRun, unless a uniform
// falls within that rounding of its probability and the draw flips, after which the run goes its
// own way. Returns how many runs differ by more than kSameRun.
constexpr double kSameRun = 1e-4;

int64_t differing_runs(const AisResult& gpu, const AisResult& cpu) {
  EXPECT_EQ(gpu.log_weights.size(), cpu.log_weights.size());
  EXPECT_NEAR(gpu.log_z_base, cpu.log_z_base, 1e-9);
  int64_t differing = 0;
  for (size_t r = 0; r < std::min(gpu.log_weights.size(), cpu.log_weights.size()); ++r) {
    differing += std::fabs(gpu.log_weights[r] - cpu.log_weights[r]) > kSameRun;
  }
  return differing;
}

// A tiny model (d = 16, H = 12), 64 runs of 300 steps: each run takes 300 x 28 = 8400 draws, and
// each draw flips with probability about |dp| <= 0.25 |du| ~ 2.5e-7, so a run parts with
// probability ~2e-3 and the expected number of parted runs is ~0.13; at most 6 is allowed (Poisson
// tail P(>= 7) ~ 1e-10 even at that rate). Both visible-bias cases and both kinds of base; and
// ternary hidden units, whose two thresholds per draw make it 300 x (2 x 12 + 16) = 12000
// thresholds a run, ~0.2 parted runs expected: the same bound holds.
TEST(CudaEval, AisWeightsMatchCpuRunByRun) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  for (const auto& [type, visible_bias] :
       {std::pair{HiddenType::binary, false}, std::pair{HiddenType::binary, true},
        std::pair{HiddenType::ternary, false}, std::pair{HiddenType::ternary, true}}) {
    Params p = test::random_params(16, 12, 1.0f, 201, visible_bias);
    p.hidden_type = type;
    gpu->set_params(p);
    cpu->set_params(p);
    AisRequest request;
    request.betas = ais_betas(300);
    request.runs = 64;
    request.seed = 202;
    request.first_stream = 3;
    for (const float base : {0.0f, -0.7f}) {
      SCOPED_TRACE(std::string(hidden_type_name(type)) +
                   (visible_bias ? ", visible bias" : ", no visible bias") + ", base " +
                   std::to_string(base));
      request.base_bias.assign(16, base);
      request.base_bias[5] = 1.5f;
      const AisResult want = cpu->ais(request);
      const AisResult got = gpu->ais(request);
      EXPECT_LE(differing_runs(got, want), 6);
      EXPECT_NEAR(summarize_ais(got).log_z, summarize_ais(want).log_z,
                  // A parted run can move the mean; when none did the estimates agree to kSameRun.
                  differing_runs(got, want) == 0 ? kSameRun : 0.5);
    }
  }
}

// MNIST-sized (d = 784, H = 50, W ~ N(0, 0.1^2), base rates of a synthetic image set), 100 runs
// of 200 steps: each run takes 200 x 834 = 1.7e5 draws; with |du| up to ~3e-6 for 784-term sums
// (|dp| <= 7.5e-7) a run parts with probability at most ~0.12, so about 88 of 100 runs are
// expected to agree. At least 40 must (a binomial tail below 1e-20 at that rate); and the
// estimates, both unbiased for the same Z, agree within the sum of their 3-sigma half-widths plus
// 0.05 nats.
TEST(CudaEval, AisMatchesCpuOnMnistSizedModel) {
  RBM_REQUIRE_CUDA_DEVICE();
  Params p = test::random_params(784, 50, 0.1f, 301, false);
  for (float& b : p.b) b = 0.0f;
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  gpu->set_params(p);
  cpu->set_params(p);
  AisRequest request;
  request.betas = ais_betas(200);
  request.runs = 100;
  request.seed = 302;
  request.base_bias.resize(784);
  for (int i = 0; i < 784; ++i)
    request.base_bias[i] = -3.0f + 0.04f * static_cast<float>((i * 37) % 100);
  const AisResult want = cpu->ais(request);
  const AisResult got = gpu->ais(request);
  EXPECT_LE(differing_runs(got, want), 60);
  const AisSummary g = summarize_ais(got), c = summarize_ais(want);
  EXPECT_NEAR(g.log_z, c.log_z, (g.log_z_high - g.log_z) + (c.log_z_high - c.log_z) + 0.05);
}

// A request for more memory than the device has is refused with InputError before anything is
// allocated, and the backend stays usable.
TEST(CudaEval, AisRefusesRequestsLargerThanDeviceMemory) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Params p = test::random_params(784, 100, 0.1f, 401, false);
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  gpu->set_params(p);
  AisRequest request;
  request.betas = ais_betas(10);
  request.base_bias.assign(784, 0.0f);
  request.runs = int64_t{200} << 20;  // 2e8 runs x 7 KiB: 1.4 TB
  try {
    gpu->ais(request);
    ADD_FAILURE() << "a 1.4 TB AIS request was not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--ais-runs"), std::string::npos) << e.what();
  }
  request.runs = 4;
  const AisResult small = gpu->ais(request);
  EXPECT_EQ(small.log_weights.size(), 4u);
  for (const double lw : small.log_weights) EXPECT_TRUE(std::isfinite(lw));
}

std::string cuda_exe() { return test::path_from_env_or("RBM_CUDA_EXE", RBM_CUDA_EXE); }
std::string cpu_exe() {
  std::string exe = cuda_exe();
  const size_t slash = exe.find_last_of('/');
  return (slash == std::string::npos ? std::string() : exe.substr(0, slash + 1)) + "rbm_cpu";
}
std::string mnist_dir() { return test::path_from_env_or("RBM_MNIST_DIR", RBM_MNIST_DIR); }

nlohmann::json eval_json(const std::string& exe, const std::vector<std::string>& args) {
  std::vector<std::string> all = {"eval", "--data", mnist_dir(), "--json"};
  all.insert(all.end(), args.begin(), args.end());
  const test::CommandResult r = test::run_command(exe, all);
  EXPECT_EQ(r.exit_code, 0) << exe << ": " << r.output;
  return r.exit_code == 0 ? nlohmann::json::parse(r.output) : nlohmann::json::object();
}

// The two builds' eval commands: exact log Z (H = 14) to 1e-9 relative, and AIS (H = 40) within
// the two estimates' 3-sigma half-widths plus 0.05 nats (see above for why not identical); the
// other numbers are computed on the host by the same code.
TEST(CudaEval, EvalCommandMatchesTheCpuBuild) {
  RBM_REQUIRE_CUDA_DEVICE();
  const test::TempDir dir;
  for (const int H : {14, 40}) {
    SCOPED_TRACE("H = " + std::to_string(H));
    const Params p = test::random_params(784, H, 0.1f, 500 + H, true);
    const std::filesystem::path model = dir / ("h" + std::to_string(H));
    std::filesystem::create_directories(model);
    write_model(model, p);
    const std::vector<std::string> args = {"--model", model.string(), "--ais-runs",
                                           "100",     "--ais-betas",  "500"};
    const nlohmann::json gpu = eval_json(cuda_exe(), args);
    const nlohmann::json cpu = eval_json(cpu_exe(), args);
    ASSERT_TRUE(gpu.contains("log_z") && cpu.contains("log_z"));
    EXPECT_EQ(gpu["backend"], "cuda");
    EXPECT_EQ(gpu["log_z_method"], cpu["log_z_method"]);
    const double g = gpu["log_z"].get<double>(), c = cpu["log_z"].get<double>();
    if (H <= 24) {
      EXPECT_NEAR(g, c, 1e-9 * std::fabs(c));
    } else {
      EXPECT_NEAR(
          g, c,
          (gpu["log_z_high"].get<double>() - g) + (cpu["log_z_high"].get<double>() - c) + 0.05);
    }
    EXPECT_NEAR(gpu["avg_pll"].get<double>(), cpu["avg_pll"].get<double>(), 1e-9);
    EXPECT_EQ(gpu["n_images"], cpu["n_images"]);
  }
}

}  // namespace
}  // namespace rbm
