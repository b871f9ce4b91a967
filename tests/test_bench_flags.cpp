// The benchmarks' flag parser (bench/flags.hpp): integer flags take exactly an integer in their
// range, and a refused value or an unknown flag makes parse_flags return false.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/flags.hpp"

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
  for (const char* bad :
       {"0", "-3", "1001", "10x", "", " 5", "abc", "1e3", "99999999999999999999"}) {
    EXPECT_FALSE(parse({"--iters", bad}, flags)) << "'" << bad << "'";
    EXPECT_EQ(iters, 1000) << "a refused value must not change the flag: '" << bad << "'";
  }
  EXPECT_FALSE(parse({"--iters"}, flags));         // no value
  EXPECT_FALSE(parse({"--repeats", "3"}, flags));  // not a flag
}

}  // namespace
}  // namespace rbm
