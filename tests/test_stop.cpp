// Stopping a log point's metrics on request (host/stop.hpp), in-process: each metric looks at the
// request as often as its comment says (per image, per pixel of a PLL block, per AIS temperature of
// each run, per piece of kExactStatesPerLook hidden states), gives up at its next
// look once the request says so (a parallel one: each worker looks at most once more), and a
// request that never comes changes no result, bit for bit. The signal that makes the request, and
// what the trainer and eval do then, are tested in test_resume.cpp and test_eval_cli.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "host/ais.hpp"
#include "host/backend.hpp"
#include "host/evaluate.hpp"
#include "host/log_z.hpp"
#include "host/metrics.hpp"
#include "host/numeric.hpp"
#include "host/stop.hpp"
#include "host/train_eval.hpp"
#include "tests/forwarding_backend.hpp"
#include "tests/tiny_model.hpp"

namespace rbm {
namespace {

// A StopRequest that turns true at its `after`-th call and stays true, and counts its calls.
class CountingStop {
 public:
  explicit CountingStop(int64_t after = std::numeric_limits<int64_t>::max()) : after_(after) {}
  StopRequest request() {
    return [this] { return calls_.fetch_add(1) + 1 >= after_; };
  }
  int64_t calls() const { return calls_.load(); }
  // Calls from the one that turned true on: the looks made after the request.
  int64_t calls_after_request() const { return calls() - after_ + 1; }

 private:
  int64_t after_;
  std::atomic<int64_t> calls_{0};
};

// d = 64 pixels, H = 24 hidden units (above kTrainExactHidden: log Z by AIS), 300 images: two PLL
// blocks (256 + 44).
constexpr int kD = 64, kH = 24, kRows = 300, kPllBlock = 256;
Params model() { return test::random_params(kD, kH, 0.3f, 7, true); }
Dataset images() { return test::patterned_images(kD, kRows, 3); }

AisRequest small_ais(const Params& params) {
  AisRequest request;
  request.base_bias.assign(static_cast<size_t>(params.visible), 0.0f);
  request.betas = ais_betas(40);
  request.runs = 6;
  request.seed = 5;
  return request;
}

// Smaller models for exact log Z: 2^18 binary hidden states, 3^11 ternary ones (64 and 44 pieces of
// kExactStatesPerLook), each a few milliseconds.
Params exact_model(HiddenType type) {
  Params p = test::random_params(kD, type == HiddenType::ternary ? 11 : 18, 0.3f, 8, true);
  p.hidden_type = type;
  return p;
}

// exact_log_partition's looks at its request: one per piece of kExactStatesPerLook states.
int64_t exact_looks(int64_t states) { return piece_count(states, kExactStatesPerLook); }

// One metric: how many looks it makes on the model and images uninterrupted, and that stopping it
// half way throws Stopped at the next look.
template <typename Metric>
void expect_stops_at_its_next_look(const char* name, int64_t looks, const Metric& metric) {
  CountingStop never;
  metric(never.request());
  EXPECT_EQ(never.calls(), looks) << name;
  CountingStop half(looks / 2);
  EXPECT_THROW(metric(half.request()), Stopped) << name;
  EXPECT_GE(half.calls_after_request(), 1) << name;
  EXPECT_LE(half.calls_after_request(), cpu_threads()) << name << ": a look more per worker";
}

TEST(Stop, EachMetricLooksAsOftenAsItSaysAndStopsAtItsNextLook) {
  const Params params = model();
  const Dataset x = images();
  const int64_t blocks = (kRows + kPllBlock - 1) / kPllBlock;
  // One look before the GEMM and one per image; recon one more between its two GEMMs.
  expect_stops_at_its_next_look("mean_free_energy", 1 + kRows,
                                [&](const StopRequest& s) { mean_free_energy(params, x, s); });
  expect_stops_at_its_next_look("mean_log_prob", 1 + kRows,
                                [&](const StopRequest& s) { mean_log_prob(params, x, 1.0, s); });
  expect_stops_at_its_next_look("reconstruction_error", 2 + kRows,
                                [&](const StopRequest& s) { reconstruction_error(params, x, s); });
  // Per block: one look per image (its tables), one per pixel (its flips over the block).
  expect_stops_at_its_next_look(
      "mean_pseudo_log_likelihood", kRows + blocks * kD,
      [&](const StopRequest& s) { mean_pseudo_log_likelihood(params, x, s); });
  expect_stops_at_its_next_look("log_partition_lower_bound", kH, [&](const StopRequest& s) {
    log_partition_lower_bound(params, s);
  });
  // One look per temperature step of each run.
  AisRequest request = small_ais(params);
  const int64_t steps = static_cast<int64_t>(request.betas.size()) - 1;
  expect_stops_at_its_next_look("ais_cpu", request.runs * steps, [&](const StopRequest& s) {
    request.stop = s;
    ais_cpu(params, request);
  });
  expect_stops_at_its_next_look(
      "compute_metrics", 2 * (1 + kRows) + 1 + (kRows + blocks * kD),
      [&](const StopRequest& s) { compute_metrics(params, x, nullptr, 10, 1.0, s); });
  // One look per piece of kExactStatesPerLook states, with either sum, binary or ternary units.
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    const Params p = exact_model(type);
    for (const LogZSum sum : {LogZSum::products, LogZSum::softplus}) {
      expect_stops_at_its_next_look(hidden_type_name(type), exact_looks(exact_hidden_states(p)),
                                    [&](const StopRequest& s) {
                                      exact_log_partition(p, sum, {s, nullptr});
                                    });
    }
  }
}

// Exact log Z counts the states it has summed: all of them, 2^H or 3^H, when it runs to its end
// (through the CPU backend too), fewer when it stops; a stop requested before it starts (the first
// look) stops it before any state.
TEST(Stop, ExactLogZCountsItsStatesAndStopsAtTheFirstLook) {
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    SCOPED_TRACE(hidden_type_name(type));
    const Params p = exact_model(type);
    const int64_t states = exact_hidden_states(p);
    EXPECT_EQ(states, type == HiddenType::ternary ? 177147 : 262144);
    std::atomic<int64_t> done{0};
    CountingStop never;
    const double log_z = exact_log_partition(p, LogZSum::automatic, {never.request(), &done});
    EXPECT_EQ(done.load(), states);
    EXPECT_EQ(log_z, exact_log_partition(p));
    std::unique_ptr<Backend> backend = make_cpu_backend();
    backend->set_params(p);
    done = 0;
    EXPECT_EQ(backend->exact_log_partition({never.request(), &done}), log_z);
    EXPECT_EQ(done.load(), states);

    done = 0;
    CountingStop at_once(1);
    EXPECT_THROW(backend->exact_log_partition({at_once.request(), &done}), Stopped);
    EXPECT_EQ(done.load(), 0);
    EXPECT_LE(at_once.calls(), cpu_threads());
    done = 0;
    CountingStop half(exact_looks(states) / 2);
    EXPECT_THROW(backend->exact_log_partition({half.request(), &done}), Stopped);
    EXPECT_GT(done.load(), 0);
    EXPECT_LT(done.load(), states);
  }
}

// estimate_log_z passes its request and its count to exact enumeration (training's --eval-every
// and eval give theirs): a request after the lower bound's kH looks stops the enumeration itself.
TEST(Stop, LogZStopsItsExactEnumeration) {
  const Params p = exact_model(HiddenType::binary);
  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(p);
  LogZOptions options;
  options.base_rate = base_rate_biases(images());
  std::atomic<int64_t> done{0};
  options.exact_states_done = &done;
  ASSERT_TRUE(log_z_is_exact(p, options));
  const int64_t bound_looks = p.hidden;
  CountingStop never;
  options.stop = never.request();
  EXPECT_EQ(estimate_log_z(*backend, p, options).log_z, exact_log_partition(p));
  EXPECT_EQ(done.load(), exact_hidden_states(p));
  EXPECT_EQ(never.calls(), bound_looks + exact_looks(exact_hidden_states(p)));
  done = 0;
  CountingStop in_enumeration(bound_looks + 3);
  options.stop = in_enumeration.request();
  EXPECT_THROW(estimate_log_z(*backend, p, options), Stopped);
  EXPECT_LT(done.load(), exact_hidden_states(p));
  EXPECT_GE(in_enumeration.calls_after_request(), 1);
  EXPECT_LE(in_enumeration.calls_after_request(), cpu_threads());
}

TEST(Stop, ARequestThatNeverComesChangesNoResult) {
  const Params params = model();
  const Dataset x = images();
  CountingStop never;
  const StopRequest s = never.request();
  EXPECT_EQ(mean_free_energy(params, x, s), mean_free_energy(params, x));
  EXPECT_EQ(reconstruction_error(params, x, s), reconstruction_error(params, x));
  EXPECT_EQ(mean_pseudo_log_likelihood(params, x, s), mean_pseudo_log_likelihood(params, x));
  EXPECT_EQ(log_partition_lower_bound(params, s), log_partition_lower_bound(params));
  AisRequest request = small_ais(params);
  const AisResult plain = ais_cpu(params, request);
  request.stop = s;
  const AisResult looked = ais_cpu(params, request);
  EXPECT_EQ(looked.log_weights, plain.log_weights);
  EXPECT_EQ(looked.log_z_base, plain.log_z_base);
  for (const HiddenType type : {HiddenType::binary, HiddenType::ternary}) {
    const Params p = exact_model(type);
    for (const LogZSum sum : {LogZSum::products, LogZSum::softplus}) {
      EXPECT_EQ(exact_log_partition(p, sum, {s, nullptr}), exact_log_partition(p, sum));
    }
  }

  std::unique_ptr<Backend> backend = make_cpu_backend();
  backend->set_params(params);
  const std::vector<float> base_rate = base_rate_biases(x);
  const EvalMetrics a = evaluate_for_metrics(*backend, params, x, &x, base_rate, 9);
  const EvalMetrics b = evaluate_for_metrics(*backend, params, x, &x, base_rate, 9, s);
  EXPECT_EQ(a.log_z, b.log_z);
  EXPECT_EQ(a.log_z_method, b.log_z_method);
  EXPECT_EQ(a.log_p_train, b.log_p_train);
  EXPECT_EQ(a.log_p_heldout, b.log_p_heldout);
  EXPECT_GT(never.calls(), 0);
}

// The CPU backend, except that its AIS never looks at the request, as Backend::ais may
// (host/backend.hpp).
class AisThatDoesNotLook : public test::ForwardingCpuBackend {
 public:
  AisResult ais(const AisRequest& request) override {
    ++ais_calls;
    AisRequest without_stop = request;
    without_stop.stop = nullptr;
    return inner().ais(without_stop);
  }
  int ais_calls = 0;
};

// A backend whose AIS does not look still stops between the two bases: the second never starts.
TEST(Stop, LogZStopsBetweenTheBasesWhenTheBackendsAisDoesNotLook) {
  const Params params = model();
  AisThatDoesNotLook backend;
  backend.set_params(params);
  LogZOptions options;
  options.max_exact_hidden = 0;  // AIS
  options.ais_runs = 4;
  options.ais_betas = 40;
  options.base_rate = base_rate_biases(images());
  // The lower bound looks kH times; the request comes at the look after the first base.
  CountingStop after_first_base(kH + 1);
  options.stop = after_first_base.request();
  EXPECT_THROW(estimate_log_z(backend, params, options), Stopped);
  EXPECT_EQ(backend.ais_calls, 1);
  EXPECT_EQ(after_first_base.calls(), kH + 1);
}

}  // namespace
}  // namespace rbm
