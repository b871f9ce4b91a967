// The fused single-sample trainer's algorithm (kernels/fused_cd_cta.h, issue 8) run on the CPU by
// an emulated thread-block cluster, against the CPU reference build. The CUDA kernel runs the
// same code for each CTA's threads, so this checks in CI, without a device, the kernel's
// indexing (rows split over CTAs, empty CTAs, fewer threads than units), its named draws, its
// update order and its ternary path. What only a device can check (the barriers themselves,
// distributed shared memory, the launch) is tests/cuda's and scripts/device_check's.
//
// The emulator runs one phase (the code between two barriers) for every thread of every CTA
// before the next phase, so a correct kernel computes here what it computes on the device. It
// also checks the kernel's discipline: two phases with no barrier between them, or a read of
// another CTA's partials not right after a cluster barrier, throw; shared memory starts as NaN,
// so a read of anything not written first poisons the result; and the thread and CTA order is
// run forwards and backwards, which must give bit-identical results (a thread reading what
// another thread of its phase writes would see it in one order and not the other).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/dataset.hpp"
#include "host/hidden_units.hpp"
#include "host/model.hpp"
#include "kernels/fused_cd_cta.h"
#include "kernels/philox.h"
#include "tests/cd_reference.hpp"

namespace rbm {
namespace {

// kernels/fused_cd_cta.h's executor for every CTA of a cluster, on this thread.
class EmulatedCluster {
 public:
  EmulatedCluster(int d, int H, int cluster_ctas, int threads, bool backwards)
      : threads_(threads), backwards_(backwards), memory_(static_cast<size_t>(cluster_ctas)) {
    for (int rank = 0; rank < cluster_ctas; ++rank) {
      std::vector<float>& memory = memory_[static_cast<size_t>(rank)];
      memory.assign(fused::cta_floats(d, H, cluster_ctas, threads), 0.0f);
      ctas_.push_back(fused::carve_cta(memory.data(), d, H, cluster_ctas, threads, rank));
      // Everything after the image index's header is NaN until the kernel writes it.
      std::fill(memory.begin() + fused::kHeaderFloats, memory.end(), std::nanf(""));
    }
  }

  template <typename F>
  void each_thread(F&& f) {
    if (!synced_) throw std::logic_error("two phases with no barrier between them");
    synced_ = false;
    remote_reads_allowed_ = after_cluster_sync_;
    const int n = static_cast<int>(ctas_.size());
    for (int c = 0; c < n; ++c) {
      fused::Cta& cta = ctas_[static_cast<size_t>(backwards_ ? n - 1 - c : c)];
      for (int t = 0; t < threads_; ++t) f(cta, backwards_ ? threads_ - 1 - t : t, threads_);
    }
    remote_reads_allowed_ = false;
  }
  void sync_cta() {
    synced_ = true;
    after_cluster_sync_ = false;
  }
  void sync_cluster() {
    synced_ = true;
    after_cluster_sync_ = true;
  }
  float* partials_of(const fused::Cta& cta, int rank) {
    if (rank != cta.rank && !remote_reads_allowed_) {
      throw std::logic_error("another CTA's partials read with no cluster barrier before");
    }
    return ctas_[static_cast<size_t>(rank)].partials;
  }

 private:
  int threads_;
  bool backwards_;
  std::vector<std::vector<float>> memory_;  // (cluster_ctas, cta_floats): each CTA's shared memory
  std::vector<fused::Cta> ctas_;
  bool synced_ = true, after_cluster_sync_ = false, remote_reads_allowed_ = false;
};

struct Cluster {
  int ctas, threads;
};

// Trains `start` on `data` with the emulated kernel, iterations [0, sum of pieces) in one launch
// per piece, as rbm_cuda --engine fused would.
Params train_emulated(const Dataset& data, const Params& start, const Recipe& recipe,
                      Cluster cluster, bool backwards, const std::vector<int64_t>& pieces) {
  Params params = start;
  fused::Problem problem;
  problem.W = params.W.data();
  problem.b = params.b.data();
  problem.a = params.has_visible_bias() ? params.a.data() : nullptr;
  problem.d = params.visible;
  problem.H = params.hidden;
  problem.images = data.pixels.data();
  problem.rows = data.rows;
  problem.key = philox_key(recipe.seed, Purpose::train);
  problem.lr = recipe.lr;
  problem.k = recipe.k;
  int64_t first = 0;
  for (const int64_t count : pieces) {
    EmulatedCluster executor(problem.d, problem.H, cluster.ctas, cluster.threads, backwards);
    with_hidden_type(params.hidden_type, [&](auto tag) {
      constexpr HiddenType kType = decltype(tag)::value;
      switch (cluster.ctas) {
        case 3:
          fused::run_fused_cd<kType, 3>(executor, problem, first, count);
          break;
        case 8:
          fused::run_fused_cd<kType, 8>(executor, problem, first, count);
          break;
        case 16:
          fused::run_fused_cd<kType, 16>(executor, problem, first, count);
          break;
        default:
          throw std::invalid_argument("no emulation of this cluster size");
      }
    });
    first += count;
  }
  return params;
}

// rows images of d pixels, each on with probability `density`.
Dataset random_images(int d, int64_t rows, double density, uint64_t seed) {
  Dataset data;
  data.width = d;
  data.height = 1;
  data.rows = rows;
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution on(density);
  for (int64_t n = 0; n < rows * d; ++n) data.pixels.push_back(on(rng) ? 1 : 0);
  data.labels.assign(static_cast<size_t>(rows), 0);
  return data;
}

// The emulated kernel against the CPU reference over `iterations`, on the first seed from 20240
// whose CPU trajectory keeps every draw tests/cd_reference.hpp's kMargin from its probability;
// held to its kTrainRelTol. Returns the emulated parameters.
Params expect_matches_cpu(const Dataset& data, Recipe recipe, Cluster cluster, int64_t iterations) {
  recipe.seed = 20240;
  recipe.seed = test::seed_clear_of_ties(data, recipe, iterations);
  const Params start = init_params(recipe, data);
  const Params want = test::train_in_pieces(*make_cpu_backend(), data, start, recipe, {iterations});
  const Params got = train_emulated(data, start, recipe, cluster, false, {iterations});
  EXPECT_GT(test::max_abs_diff(want.W, start.W), 0.0) << "the CPU reference did not train";
  const test::TrainedDifference diff = test::trained_difference(got, want, recipe);
  EXPECT_LE(diff.W, test::kTrainRelTol);
  EXPECT_LE(diff.b, test::kTrainRelTol);
  EXPECT_LE(diff.a, test::kTrainRelTol);
  return got;
}

Recipe recipe_of(int hidden, int k, bool visible_bias, HiddenType type) {
  Recipe recipe;
  recipe.hidden = hidden;
  recipe.k = k;
  recipe.visible_bias = visible_bias;
  recipe.hidden_type = type;
  return recipe;
}

// The reference recipe's shape (784 x 100, CD-3) on every cluster the lab compiles: W split 98
// or 49 rows per CTA, threads more than the hidden units.
TEST(FusedEmulation, MatchesCpuOnTheReferenceShape) {
  const Dataset data = test::synthetic_images(300, 1);
  for (const Cluster cluster : {Cluster{8, 256}, Cluster{8, 512}, Cluster{16, 256}}) {
    SCOPED_TRACE(std::to_string(cluster.ctas) + " x " + std::to_string(cluster.threads));
    expect_matches_cpu(data, recipe_of(100, 3, false, HiddenType::binary), cluster, 50);
  }
  SCOPED_TRACE("16 x 512, visible bias");
  expect_matches_cpu(data, recipe_of(100, 3, true, HiddenType::binary), Cluster{16, 512}, 50);
}

TEST(FusedEmulation, TernaryMatchesCpuOnTheReferenceShape) {
  const Dataset data = test::synthetic_images(300, 7);
  expect_matches_cpu(data, recipe_of(100, 3, true, HiddenType::ternary), Cluster{8, 256}, 50);
}

// Shapes that divide nothing: d = 50 over 16 CTAs (4 rows each; CTA 12 has 2, CTAs 13-15 none),
// over 3 CTAs (17, 17, 16), H = 37 (odd: W's stride is H itself) with fewer threads than units.
TEST(FusedEmulation, MatchesCpuOnShapesThatDivideNothing) {
  const Dataset data = random_images(50, 40, 0.3, 11);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const Cluster cluster : {Cluster{16, 32}, Cluster{3, 256}, Cluster{8, 20}}) {
      for (const int k : {1, 2}) {
        SCOPED_TRACE(std::string(hidden_type_name(type)) + ", " + std::to_string(cluster.ctas) +
                     " x " + std::to_string(cluster.threads) + ", CD-" + std::to_string(k));
        expect_matches_cpu(data, recipe_of(37, k, true, type), cluster, 100);
      }
    }
  }
}

// No thread reads what another thread writes in the same phase: running every phase's threads
// and CTAs backwards gives the same bits. And launches split anywhere give the same bits as one.
TEST(FusedEmulation, ThreadOrderAndLaunchPiecesDoNotMatter) {
  const Dataset data = test::synthetic_images(100, 3);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    SCOPED_TRACE(hidden_type_name(type));
    Recipe recipe = recipe_of(100, 2, true, type);
    recipe.seed = 5;
    const Params start = init_params(recipe, data);
    const Cluster cluster{8, 256};
    const Params forwards = train_emulated(data, start, recipe, cluster, false, {30});
    const Params backwards = train_emulated(data, start, recipe, cluster, true, {30});
    const Params pieces = train_emulated(data, start, recipe, cluster, false, {1, 17, 12});
    EXPECT_NE(forwards.W, start.W);
    for (const Params* other : {&backwards, &pieces}) {
      EXPECT_EQ(forwards.W, other->W);
      EXPECT_EQ(forwards.b, other->b);
      EXPECT_EQ(forwards.a, other->a);
    }
  }
}

}  // namespace
}  // namespace rbm
