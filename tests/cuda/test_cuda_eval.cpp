// The CUDA backend's evaluation against the CPU reference: exact log Z by enumeration (one kernel,
// double), AIS run by run (same draws, so the same weights except where float rounding flips a
// draw), the refusal of AIS requests larger than the device's memory, AIS's stop requests, and
// `rbm_cuda eval` against `rbm_cpu eval`.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/model_io.hpp"
#include "host/stop.hpp"
#include "kernels/cuda_backend.hpp"
#include "tests/cli_runner.hpp"
#include "tests/cuda/cuda_test_util.hpp"
#include "tests/gibbs_reference.hpp"
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
// own way. The double reference (tests/gibbs_reference.hpp) says which runs keep every draw
// test::kMargin from its probability: those cannot part, so each must agree with the CPU's to
// kSameRun on the GPU (and the CPU's with the reference's double weight); only the others may
// part. Returns how many runs were compared.
constexpr double kSameRun = 1e-4;

int64_t expect_clear_runs_agree(const AisResult& gpu, const AisResult& cpu,
                                const std::vector<test::AisRunReference>& refs) {
  EXPECT_EQ(gpu.log_weights.size(), refs.size());
  EXPECT_EQ(cpu.log_weights.size(), refs.size());
  EXPECT_NEAR(gpu.log_z_base, cpu.log_z_base, 1e-9);
  int64_t clear = 0;
  for (size_t r = 0; r < std::min({gpu.log_weights.size(), cpu.log_weights.size(), refs.size()});
       ++r) {
    if (refs[r].min_margin < test::kMargin) continue;
    ++clear;
    EXPECT_NEAR(cpu.log_weights[r], refs[r].log_weight, kSameRun) << "CPU run " << r;
    EXPECT_NEAR(gpu.log_weights[r], cpu.log_weights[r], kSameRun) << "run " << r;
  }
  return clear;
}

// The runs of `result` whose reference keeps every draw kMargin from its probability.
AisResult clear_runs(const AisResult& result, const std::vector<test::AisRunReference>& refs) {
  AisResult kept;
  kept.log_z_base = result.log_z_base;
  for (size_t r = 0; r < refs.size() && r < result.log_weights.size(); ++r) {
    if (refs[r].min_margin >= test::kMargin) kept.log_weights.push_back(result.log_weights[r]);
  }
  return kept;
}

// sd of log Zhat by the delta method, from summarize_ais's +-3 standard-error interval:
// expm1(log_z_high - log_z) = 3 sd(w) / (sqrt(M) mean(w)), the relative standard error times 3.
double log_z_sd(double log_z, double log_z_high) { return std::expm1(log_z_high - log_z) / 3.0; }

// Two AIS estimates of the same log Z from the same seed: their errors are nonnegatively
// correlated (the runs share their draws until they part, and most never do), so
// Var(log Zhat_g - log Zhat_c) <= sd_g^2 + sd_c^2, and under the central limit theorem a correct
// pair is further apart than z sqrt(sd_g^2 + sd_c^2) with probability 2 Phi(-z): z = 4.892 for
// 1e-6 (mpmath), 5.286 for 1e-6 / 8 (eight such checks in one test, Bonferroni).
constexpr double kZ1e6 = 4.892, kZ1e6Over8 = 5.286;
double log_z_tolerance(const AisSummary& g, const AisSummary& c, double z) {
  return z * std::hypot(log_z_sd(g.log_z, g.log_z_high), log_z_sd(c.log_z, c.log_z_high));
}

// A tiny model (d = 16, H = 12), 64 runs of 300 steps: each run takes 300 x 28 = 8400 draws, each
// within 2e-6 of its probability with probability 4e-6, so about 3% of runs are left out of the
// run-by-run comparison (5% with ternary units' two thresholds per hidden draw); at least 80% are
// asserted to take part (a property of the fixed seed, computed on the CPU). The estimates of the
// runs that cannot part agree to kSameRun; the estimates of all runs, parted ones included, within
// log_z_tolerance (z for 1e-6 over the eight checks). Both visible-bias cases and both kinds of
// base; binary and ternary hidden units.
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
    for (const float base : {0.0f, -0.7f}) {
      SCOPED_TRACE(std::string(hidden_type_name(type)) +
                   (visible_bias ? ", visible bias" : ", no visible bias") + ", base " +
                   std::to_string(base));
      const AisRequest request = test::tiny_ais_request(300, 64, 202, 3, base);
      const std::vector<test::AisRunReference> refs = test::ais_reference(p, request);
      const AisResult want = cpu->ais(request);
      const AisResult got = gpu->ais(request);
      EXPECT_GE(expect_clear_runs_agree(got, want, refs), request.runs * 8 / 10);
      EXPECT_NEAR(summarize_ais(clear_runs(got, refs)).log_z,
                  summarize_ais(clear_runs(want, refs)).log_z, kSameRun);
      const AisSummary g = summarize_ais(got), c = summarize_ais(want);
      EXPECT_NEAR(g.log_z, c.log_z, log_z_tolerance(g, c, kZ1e6Over8));
    }
  }
}

// AisWeightsMatchCpuRunByRun at the size of a compute-sanitizer step (scripts/device_check): 8
// runs of 12 steps, binary units with visible biases from the uniform base and ternary units
// without them from another, about 100 launches where that test makes 9600. Every run keeps
// every draw test::kMargin from its probability (a property of the fixed seed, computed on the
// CPU: 8 of 8 for both), so every run must agree with the CPU's to kSameRun.
TEST(CudaEval, AisSmallRunsMatchCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  const std::unique_ptr<Backend> cpu = make_cpu_backend();
  for (const auto& [type, visible_bias, base] : {std::tuple{HiddenType::binary, true, 0.0f},
                                                 std::tuple{HiddenType::ternary, false, -0.7f}}) {
    SCOPED_TRACE(hidden_type_name(type));
    Params p = test::random_params(16, 12, 1.0f, 203, visible_bias);
    p.hidden_type = type;
    gpu->set_params(p);
    cpu->set_params(p);
    const AisRequest request = test::tiny_ais_request(12, 8, 204, 5, base);
    const std::vector<test::AisRunReference> refs = test::ais_reference(p, request);
    EXPECT_EQ(expect_clear_runs_agree(gpu->ais(request), cpu->ais(request), refs), 8);
  }
}

// MNIST-sized (d = 784, H = 50, W ~ N(0, 0.1^2), base rates of a synthetic image set), 100 runs
// of 200 steps: each run takes 200 x 834 = 1.7e5 draws, each within 2e-6 of its probability with
// probability 4e-6, so about half the runs (exp(-0.67)) keep every draw clear of ties: those must
// agree with the CPU's run for run to kSameRun, and at least 30 are asserted to (a property of
// the fixed seed, computed on the CPU: 44 of 100). Only the
// others may part, so the number of parted runs is bounded by the uncertain ones, not by a
// tolerance. The estimates of all runs agree within log_z_tolerance (z for 1e-6).
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
  const std::vector<test::AisRunReference> refs = test::ais_reference(p, request);
  const AisResult want = cpu->ais(request);
  const AisResult got = gpu->ais(request);
  const int64_t clear = expect_clear_runs_agree(got, want, refs);
  std::printf("%lld of 100 runs clear of ties\n", static_cast<long long>(clear));
  EXPECT_GE(clear, 30);
  const AisSummary g = summarize_ais(got), c = summarize_ais(want);
  EXPECT_NEAR(g.log_z, c.log_z, log_z_tolerance(g, c, kZ1e6));
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

// AIS looks at its stop request between chunks of 32 temperatures (kAisTemperaturesPerLook in
// kernels/cuda_backend.cu): 300 temperatures are 9 looks, after k = 32, 64, .., 288. Looking does
// not change the result (the same kernels in the same order), a request at the third look throws
// Stopped there, and the backend then computes the same weights again, counting its steps.
TEST(CudaEval, AisStopsAtItsNextLookAndStaysUsable) {
  RBM_REQUIRE_CUDA_DEVICE();
  const Params p = test::random_params(784, 100, 0.1f, 402, true);
  const std::unique_ptr<Backend> gpu = make_cuda_backend();
  gpu->set_params(p);
  AisRequest request;
  request.betas = ais_betas(300);
  request.base_bias.assign(784, 0.0f);
  request.runs = 16;
  const AisResult unwatched = gpu->ais(request);

  std::atomic<int> looks{0};
  int stop_at = 0;  // never
  request.stop = [&] { return ++looks == stop_at; };
  const AisResult watched = gpu->ais(request);
  EXPECT_EQ(looks.load(), 9);
  EXPECT_EQ(watched.log_weights, unwatched.log_weights);

  looks = 0;
  stop_at = 3;
  EXPECT_THROW(gpu->ais(request), Stopped);
  EXPECT_EQ(looks.load(), 3);

  request.stop = nullptr;
  std::atomic<int64_t> steps{0};  // the progress count: runs x K at the end
  request.steps_done = &steps;
  EXPECT_EQ(gpu->ais(request).log_weights, unwatched.log_weights);
  EXPECT_EQ(steps.load(), 16 * 300);
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
// log_z_tolerance of the two estimates (z for 1e-6; see above for why they are not identical);
// the other numbers are computed on the host by the same code.
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
      const AisSummary gs{.log_z = g, .log_z_high = gpu["log_z_high"].get<double>()};
      const AisSummary cs{.log_z = c, .log_z_high = cpu["log_z_high"].get<double>()};
      EXPECT_NEAR(g, c, log_z_tolerance(gs, cs, kZ1e6));
    }
    EXPECT_NEAR(gpu["avg_pll"].get<double>(), cpu["avg_pll"].get<double>(), 1e-9);
    EXPECT_EQ(gpu["n_images"], cpu["n_images"]);
  }
}

}  // namespace
}  // namespace rbm
