// The fused single-sample trainer's algorithm (kernels/fused_cd_cta.h, issue 8) run on the CPU by
// an emulated thread-block cluster, against the CPU reference build. The CUDA kernel runs the
// same code for each CTA's threads, so this checks in CI, without a device, the kernel's
// indexing (rows split over CTAs, empty CTAs, fewer threads than units), its named draws, its
// update order and its ternary path. What only a device can check (the barriers themselves,
// distributed shared memory, the launch) is tests/cuda's and scripts/device_check's.
//
// The emulator runs one phase (the code between two barriers) for every thread of every CTA
// before the next phase, so a correct kernel computes here what it computes on the device. It
// also checks the kernel's discipline: two phases with no barrier between them throw, and so do
// accesses to the partials that the CTAs, free to run ahead of each other between cluster
// barriers, could race on (EmulatedCluster says which); shared memory starts as NaN,
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

// kernels/fused_cd_cta.h's executor for every CTA of a cluster, on this thread. Besides running
// the phases, it checks the rules that the device needs and the lockstep here would hide. The
// cluster barriers cut a run into epochs; within one the CTAs run at their own pace, so:
// - another CTA's partials are read only after a first cluster barrier (before it, that CTA may
//   not have started);
// - a partials buffer is, within one epoch, written by its CTA or read by others, not both (its
//   write might land before or after their read);
// - no remote read is left in the last epoch (the owner might exit, its shared memory gone,
//   while the read runs): finish() checks that the run ended with a cluster barrier after it.
class EmulatedCluster {
 public:
  EmulatedCluster(int d, int H, int cluster_ctas, int threads, bool backwards)
      : threads_(threads),
        backwards_(backwards),
        memory_(static_cast<size_t>(cluster_ctas)),
        buffers_(static_cast<size_t>(cluster_ctas) * 2) {
    for (int rank = 0; rank < cluster_ctas; ++rank) {
      std::vector<float>& memory = memory_[static_cast<size_t>(rank)];
      memory.assign(fused::cta_floats(d, H, cluster_ctas, threads), 0.0f);
      ctas_.push_back(fused::carve_cta(memory.data(), d, H, cluster_ctas, threads, rank));
      // Everything after the image index's header is NaN until the kernel writes it.
      std::fill(memory.begin() + fused::kHeaderFloats, memory.end(), std::nanf(""));
      // The partials only through partials_to_write and partials_of, each buffer its own H
      // floats: a kernel that reached them another way (the Cta's pointer, or past a buffer's end)
      // would crash here, or fail under AddressSanitizer, rather than slip past the checks.
      ctas_.back().partials = nullptr;
      for (int buffer = 0; buffer < 2; ++buffer) {
        buffer_state(rank, buffer).values.assign(static_cast<size_t>(H), std::nanf(""));
      }
    }
  }

  template <typename F>
  void each_thread(F&& f) {
    if (!synced_) throw std::logic_error("two phases with no barrier between them");
    synced_ = false;
    const int n = static_cast<int>(ctas_.size());
    for (int c = 0; c < n; ++c) {
      fused::Cta& cta = ctas_[static_cast<size_t>(backwards_ ? n - 1 - c : c)];
      for (int t = 0; t < threads_; ++t) f(cta, backwards_ ? threads_ - 1 - t : t, threads_);
    }
  }
  void sync_cta() { synced_ = true; }
  void sync_cluster() {
    synced_ = true;
    ++epoch_;
  }
  float* partials_to_write(const fused::Cta& cta, int buffer) {
    Buffer& state = buffer_state(cta.rank, buffer);
    if (state.remote_read_epoch == epoch_) {
      throw std::logic_error("CTA " + std::to_string(cta.rank) + " writes its partials buffer " +
                             std::to_string(buffer) +
                             " while other CTAs may still read it (no cluster barrier between)");
    }
    state.write_epoch = epoch_;
    return state.values.data();
  }
  float* partials_of(const fused::Cta& cta, int rank, int buffer) {
    Buffer& state = buffer_state(rank, buffer);
    if (rank != cta.rank) {
      if (epoch_ == 0) {
        throw std::logic_error("CTA " + std::to_string(rank) +
                               "'s partials read before the first cluster barrier");
      }
      if (state.write_epoch == epoch_) {
        throw std::logic_error("CTA " + std::to_string(rank) + "'s partials buffer " +
                               std::to_string(buffer) +
                               " read with no cluster barrier after its write");
      }
      state.remote_read_epoch = epoch_;
      last_remote_read_epoch_ = epoch_;
    }
    return state.values.data();
  }
  // After the kernel returns: no CTA exits while another may still read its shared memory.
  void finish() const {
    if (last_remote_read_epoch_ == epoch_) {
      throw std::logic_error(
          "the kernel ends with no cluster barrier after its last read of "
          "another CTA's shared memory");
    }
  }

 private:
  struct Buffer {
    std::vector<float> values;  // (H)
    int64_t write_epoch = -1, remote_read_epoch = -1;
  };
  Buffer& buffer_state(int rank, int buffer) {
    return buffers_.at(static_cast<size_t>(rank) * 2 + static_cast<size_t>(buffer));
  }

  int threads_;
  bool backwards_;
  std::vector<std::vector<float>> memory_;  // (cluster_ctas, cta_floats): each CTA's shared memory
  std::vector<fused::Cta> ctas_;
  std::vector<Buffer> buffers_;  // (cluster_ctas, 2): each CTA's two partials buffers
  bool synced_ = true;
  int64_t epoch_ = 0;  // cluster barriers so far
  int64_t last_remote_read_epoch_ = -1;
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
    executor.finish();
    first += count;
  }
  return params;
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
  const Dataset data = test::random_images(50, 40, 0.3, 11);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    for (const Cluster cluster :
         {Cluster{8, 256}, Cluster{16, 32}, Cluster{3, 256}, Cluster{8, 20}}) {
      for (const int k : {1, 2}) {
        SCOPED_TRACE(std::string(hidden_type_name(type)) + ", " + std::to_string(cluster.ctas) +
                     " x " + std::to_string(cluster.threads) + ", CD-" + std::to_string(k));
        expect_matches_cpu(data, recipe_of(37, k, true, type), cluster, 100);
      }
    }
  }
}

// The emulator's checks of the partials fail where the device could race: two CTAs' phases
// that write a buffer and read it from another CTA with no cluster barrier between, either way
// round; a read before the first cluster barrier; none after the last read.
TEST(FusedEmulation, EmulatorRefusesRacesOnThePartials) {
  // Runs one step on `e`, a cluster of 2 CTAs: wP each CTA writes its partials buffer P, rP each
  // reads the other's, c a CTA barrier, C a cluster barrier, F the end of the kernel.
  const auto run = [](EmulatedCluster& e, const std::string& step) {
    if (step == "c") return e.sync_cta();
    if (step == "C") return e.sync_cluster();
    if (step == "F") return e.finish();
    const int buffer = step[1] - '0';
    e.each_thread([&](fused::Cta& c, int thread, int) {
      if (thread != 0) return;
      if (step[0] == 'w') {
        e.partials_to_write(c, buffer)[0] = 1.0f;
      } else {
        EXPECT_EQ(e.partials_of(c, 1 - c.rank, buffer)[0], 1.0f);
      }
    });
  };
  // `steps` on a fresh cluster: every step but the last runs; the last throws, or not.
  const auto expect = [&](const char* what, const std::vector<std::string>& steps, bool refused) {
    SCOPED_TRACE(what);
    EmulatedCluster e(8, 4, 2, 4, false);
    for (size_t k = 0; k + 1 < steps.size(); ++k) ASSERT_NO_THROW(run(e, steps[k])) << k;
    if (refused) {
      EXPECT_THROW(run(e, steps.back()), std::logic_error);
    } else {
      EXPECT_NO_THROW(run(e, steps.back()));
    }
  };
  expect("double-buffered, as the kernel does it",
         {"w0", "C", "r0", "c", "w1", "C", "r1", "c", "w0", "C", "r0", "C", "F"}, false);
  expect("single-buffered: buffer 0 written again while it may be read",
         {"w0", "C", "r0", "c", "w0"}, true);
  expect("read after a CTA barrier only", {"w0", "C", "r0", "c", "w1", "c", "r1"}, true);
  expect("read before the first cluster barrier (the other CTA may not have started)", {"c", "r1"},
         true);
  expect("no cluster barrier after the last read", {"w0", "C", "r0", "c", "F"}, true);
}

// More hidden units than threads (each thread walks several columns; one column group), on the
// product's cluster, as CudaBackend.MatchesCpuOnOtherShapes runs it on the device.
TEST(FusedEmulation, MatchesCpuWithMoreHiddenUnitsThanThreads) {
  const Dataset data = test::synthetic_images(300, 9);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    SCOPED_TRACE(hidden_type_name(type));
    expect_matches_cpu(data, recipe_of(500, 3, true, type), Cluster{8, 256}, 10);
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
