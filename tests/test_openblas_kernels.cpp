// OpenBLAS's generic kernels on a CPU it does not know (host/openblas_kernels.hpp): which kernels
// the programs choose instead, and that rbm_cpu runs itself again with them, once.
#include <gtest/gtest.h>

#include <string>

#include "host/openblas_kernels.hpp"
#include "tests/cli_runner.hpp"
#include "tests/test_util.hpp"

namespace rbm {
namespace {

// What this CPU should get in place of Prescott: the development machine (Zen 5) and CI run
// AVX-512 F, CD, BW, DQ and VL; any CPU this build runs on has AVX2 and FMA.
std::string expected_kernels() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  return avx512 ? "SkylakeX" : "Haswell";
}

TEST(OpenblasKernels, OnlyPrescottIsReplacedAndOnlyWithoutTheUsersChoice) {
  {
    const test::ScopedEnv unset("OPENBLAS_CORETYPE", nullptr);
    EXPECT_EQ(openblas_kernels_to_choose("Prescott"), expected_kernels());
    EXPECT_EQ(openblas_kernels_to_choose("PRESCOTT"), expected_kernels());  // a one-CPU build's
    for (const char* known : {"Haswell", "SkylakeX", "Cooperlake", "Zen", ""}) {
      EXPECT_EQ(openblas_kernels_to_choose(known), "") << known;
    }
  }
  const test::ScopedEnv users_choice("OPENBLAS_CORETYPE", "Prescott");
  EXPECT_EQ(openblas_kernels_to_choose("Prescott"), "");
}

// rbm_cpu --device-info names the kernels OpenBLAS runs. Told that OpenBLAS chose Prescott
// (RBM_TEST_OPENBLAS_CORENAME) with OPENBLAS_CORETYPE unset, rbm_cpu runs itself again with
// OPENBLAS_CORETYPE set, and the run that prints is the second: OpenBLAS runs what it was told.
// Without the pretence it runs as it started (whatever OpenBLAS chose here), and a user's
// OPENBLAS_CORETYPE is kept even with it.
TEST(OpenblasKernels, RbmCpuRunsItselfAgainWithBetterKernels) {
  const auto device_info = [](const std::vector<std::string>& env) {
    std::vector<std::string> args = env;
    args.push_back(RBM_CPU_EXE);
    args.push_back("--device-info");
    return test::run_command("env", args);
  };
  const test::CommandResult rerun =
      device_info({"-u", "OPENBLAS_CORETYPE", "RBM_TEST_OPENBLAS_CORENAME=Prescott"});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find("OpenBLAS " + expected_kernels() + " kernels"), std::string::npos)
      << rerun.output;
  EXPECT_EQ(test::line_count(rerun.output), 1) << rerun.output;

  const test::CommandResult users =
      device_info({"OPENBLAS_CORETYPE=Prescott", "RBM_TEST_OPENBLAS_CORENAME=Prescott"});
  EXPECT_EQ(users.exit_code, 0) << users.output;
  EXPECT_NE(users.output.find("OpenBLAS Prescott kernels"), std::string::npos) << users.output;

  const test::CommandResult plain = device_info({"OPENBLAS_CORETYPE=Haswell"});
  EXPECT_NE(plain.output.find("OpenBLAS Haswell kernels"), std::string::npos) << plain.output;
}

}  // namespace
}  // namespace rbm
