// The double reference of the sampler (tests/gibbs_reference.hpp), which the GPU tests compare
// chain by chain, against the CPU backend: every chain whose draws all keep test::kMargin from
// their probabilities must end in the same state, on the GPU tests' own models and seeds, so that
// what the device check relies on is checked where there is no device.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

#include "host/backend.hpp"
#include "host/model.hpp"
#include "tests/cd_reference.hpp"
#include "tests/gibbs_reference.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// tests/cuda/test_cuda_minibatch.cpp's CudaSampler.ChainsMatchCpu on the CPU alone.
TEST(GibbsReference, CpuSamplerMatchesClearChains) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    SCOPED_TRACE(hidden_type_name(type));
    const Dataset data = test::synthetic_images(50, 2);
    Recipe init;
    init.init_std = 0.1f;
    init.visible_bias = true;
    init.hidden_type = type;
    const Params params = init_params(init, data);
    const int64_t n = 1000;
    const std::vector<uint8_t> initial = random_initial_states(n, 784, 3);
    std::vector<int64_t> all(static_cast<size_t>(n)), edges = {0, 383, 384, 767, 768, 999};
    for (int64_t c = 0; c < n; ++c) all[static_cast<size_t>(c)] = c;
    const uint32_t seed =
        test::seed_clearing_chains(params, 77, edges, test::rows_of(initial, 784, edges), 5, 3);
    const std::vector<test::ChainReference> refs =
        test::sampler_reference(params, seed, all, initial, 5, 3);
    std::vector<uint8_t> want = initial;
    const std::unique_ptr<Backend> cpu = make_cpu_backend();
    cpu->set_params(params);
    cpu->gibbs(want, n, seed, 5, 3);
    const test::ChainComparison on_cpu = test::compare_clear_chains(refs, want, 784);
    std::printf("seed %u: %lld of 1000 chains clear\n", seed, static_cast<long long>(on_cpu.clear));
    EXPECT_GE(on_cpu.clear, n * 95 / 100);
    EXPECT_EQ(on_cpu.mismatched, 0);
    // The reference is not trivially equal: the chains moved.
    EXPECT_NE(want, initial);
  }
}

}  // namespace
}  // namespace rbm
