// The CPU backend: the reference every other backend is tested against. Single-sample CD-k uses
// x as the binary vector it is: W'x is a sum of the rows of W where x is 1, and the update touches
// only those rows. Ternary hidden units (h in {-1, 0, 1}) change only the hidden side: the draw
// ternary_draw(u, t) from the pre-activation t, and G(t) for sigm(t) in the gradient. W (d, H) =
// 784 x 100 floats = 313.6 KB stays in L2.
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/cpu_minibatch.hpp"
#include "host/cpu_threads.hpp"
#include "host/evaluate.hpp"
#include "host/float8.hpp"
#include "host/thread_choice.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace rbm {
namespace {

using cpu::Float8;
using cpu::load8;
using cpu::store8;

// The model in the layout the single-sample loop wants: rows of W padded from H to Hp, a
// multiple of 8, with zeros, so that every row is whole 8-float vectors. The padding stays zero:
// padded hidden probabilities are set to 0, so padded units are never drawn and never updated.
struct PaddedModel {
  int d = 0, H = 0, Hp = 0;
  HiddenType hidden_type = HiddenType::binary;
  std::vector<float> W;  // (d, Hp), row-major
  std::vector<float> b;  // (Hp)
  std::vector<float> a;  // (d), empty without visible bias

  explicit PaddedModel(const Params& p = {})
      : d(p.visible), H(p.hidden), Hp((p.hidden + 7) / 8 * 8), hidden_type(p.hidden_type), a(p.a) {
    W.assign(static_cast<size_t>(d) * Hp, 0.0f);
    b.assign(static_cast<size_t>(Hp), 0.0f);
    for (int i = 0; i < d; ++i) std::copy_n(&p.W[static_cast<size_t>(i) * H], H, row(i));
    std::copy(p.b.begin(), p.b.end(), b.begin());
  }
  Params unpadded() const {
    Params p;
    p.visible = d;
    p.hidden = H;
    p.hidden_type = hidden_type;
    p.W.resize(static_cast<size_t>(d) * H);
    for (int i = 0; i < d; ++i) std::copy_n(row(i), H, &p.W[static_cast<size_t>(i) * H]);
    p.b.assign(b.begin(), b.begin() + H);
    p.a = a;
    return p;
  }
  float* row(int i) { return W.data() + static_cast<size_t>(i) * Hp; }
  const float* row(int i) const { return W.data() + static_cast<size_t>(i) * Hp; }

  // sum (Hp) = the sum of the rows in active.
  void sum_of_rows(const int* active, int n_active, float* sum) const {
    cpu::sum_of_rows(W.data(), static_cast<size_t>(Hp), active, n_active, Hp, sum);
  }

  // pre[i - begin] = a_i + W_i h for rows i in [begin, end), eight rows at a time (independent
  // accumulators hide the FMA latency), each row's eight partial sums reduced together.
  void visible_preactivation(const float* h, int begin, int end, float* pre) const {
    int i = begin;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 8 <= end; i += 8) {
      __m256 acc[8];
      for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
      for (int j = 0; j < Hp; j += 8) {
        const __m256 hv = _mm256_loadu_ps(h + j);
        for (int r = 0; r < 8; ++r) {
          acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(row(i + r) + j), hv, acc[r]);
        }
      }
      // Transpose-and-add: lane r of the result is the sum of acc[r]'s eight lanes.
      const __m256 t0 = _mm256_hadd_ps(acc[0], acc[1]), t1 = _mm256_hadd_ps(acc[2], acc[3]);
      const __m256 t2 = _mm256_hadd_ps(acc[4], acc[5]), t3 = _mm256_hadd_ps(acc[6], acc[7]);
      const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
      const __m256 sums =
          _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
      _mm256_storeu_ps(pre + (i - begin), sums);
    }
#endif
    for (; i < end; ++i) {
      Float8 acc = {};
      for (int j = 0; j < Hp; j += 8) acc += load8(row(i) + j) * load8(h + j);
      pre[i - begin] =
          ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
    if (!a.empty()) {
      for (int k = begin; k < end; ++k) pre[k - begin] += a[k];
    }
  }

  // W[i] += delta (Hp) for each row i in active.
  void add_to_rows(const int* active, int n_active, const float* delta) {
    for (int k = 0; k < n_active; ++k) {
      float* w_row = row(active[k]);
      for (int j = 0; j < Hp; j += 8) store8(w_row + j, load8(w_row + j) + load8(delta + j));
    }
  }
};

// A barrier for a few threads that spin briefly (the single-sample recipe meets one several
// times per iteration, microseconds apart), then sleep on a futex (std::atomic::wait) so that a
// descheduled partner costs a wake-up, not a busy core.
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}
  void arrive_and_wait() {
    const uint32_t generation = generation_.load();
    if (arrived_.fetch_add(1) + 1 == parties_) {
      arrived_.store(0);
      generation_.store(generation + 1);
      if (sleepers_.load() > 0) generation_.notify_all();
      return;
    }
    for (int spin = 0; spin < 4000; ++spin) {
      if (generation_.load(std::memory_order_acquire) != generation) return;
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    sleepers_.fetch_add(1);
    generation_.wait(generation);  // returns at once if the generation has moved on
    sleepers_.fetch_sub(1);
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0}, sleepers_{0};
  std::atomic<uint32_t> generation_{0};
};

// One persistent thread that runs a job at a time, so that training calls do not pay for a
// thread start.
class Worker {
 public:
  ~Worker() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void start(std::function<void()> job) {
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    {
      std::lock_guard lock(mutex_);
      job_ = std::move(job);
      done_ = false;
    }
    wake_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [this] { return done_; });
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [this] { return stop_ || job_; });
      if (stop_) return;
      std::function<void()> job = std::move(job_);
      job_ = nullptr;
      lock.unlock();
      job();
      lock.lock();
      done_ = true;
      wake_.notify_all();
    }
  }
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> job_;
  bool done_ = true, stop_ = false;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuOptions options) : options_(options) {
    if (options_.recipe_threads < 0 || options_.recipe_threads > 2) {
      throw std::invalid_argument("CpuOptions: recipe_threads must be 0 (timed), 1 or 2");
    }
  }
  std::string name() const override { return "cpu"; }
  // The threads its parallel work uses (host/cpu_threads.hpp): the hardware's, or RBM_CPU_THREADS;
  // and the kernels OpenBLAS runs its GEMMs with (host/blas_kernels.hpp).
  std::string device_description() const override {
    const int threads = cpu_threads();
    const char* kernels = openblas_get_corename();
    return "CPU, " + std::to_string(threads) + (threads == 1 ? " thread" : " threads") +
           (forced_cpu_threads() ? " (RBM_CPU_THREADS)" : "") + ", " + cpu::simd_name(cpu::simd()) +
           (cpu::simd_from_environment() ? " (RBM_CPU_SIMD)" : "") + ", OpenBLAS " +
           (kernels != nullptr ? kernels : "unknown") + " kernels";
  }

  void stage(const Dataset& train) override {
    if (train.rows <= 0) throw std::invalid_argument("stage: no training images");
    rows_ = train.rows;
    d_ = train.cols();
    // Compressed rows: the active pixels of image r are active_[offsets_[r] .. offsets_[r+1]).
    offsets_.assign(static_cast<size_t>(rows_) + 1, 0);
    active_.clear();
    for (int64_t r = 0; r < rows_; ++r) {
      const uint8_t* x = train.row(r);
      for (int i = 0; i < d_; ++i) {
        if (x[i]) active_.push_back(i);
      }
      offsets_[static_cast<size_t>(r) + 1] = static_cast<int64_t>(active_.size());
    }
    // The rows of W split in two shards at a multiple of 32 (whole SIMD blocks of uniforms);
    // image r's active pixels in shard 1 start at active_[image_split_[r]].
    split_row_ = d_ / 2 / 32 * 32;
    image_split_.resize(static_cast<size_t>(rows_));
    for (int64_t r = 0; r < rows_; ++r) {
      const auto begin = active_.begin() + offsets_[r], end = active_.begin() + offsets_[r + 1];
      image_split_[r] = std::lower_bound(begin, end, split_row_) - active_.begin();
    }
    minibatch_.stage(train);
  }

  void set_params(const Params& params) override {
    model_ = PaddedModel(params);
    minibatch_.clear_state();
  }
  Params get_params() override { return model_.unpadded(); }

  void train_cd(const Recipe& recipe, int64_t first_iteration, int64_t count) override {
    if (rows_ == 0) throw std::logic_error("train_cd: stage() the training images first");
    if (model_.d != d_) throw std::logic_error("train_cd: model and data disagree on d");
    // Short calls (tests, single iterations) run both shards on this thread; long calls put
    // shard 1 on the worker when that is faster here and now (host/thread_choice.hpp: measured
    // per call, whatever RBM_CPU_THREADS >= 2 says: a forced second thread on a busy machine took
    // 20 to 50 times as long), never with RBM_CPU_THREADS=1 or on a machine of one hardware
    // thread; or as options_ fix it. The arithmetic is the same either way, and so are the results.
    constexpr int64_t kThreadedFrom = 256;
    partials_.assign(2 * kShards * ShardRunner::partial_stride(model_.Hp), 0.0f);
    const std::optional<int> forced = forced_cpu_threads();
    const bool can_use_two = forced ? *forced >= 2 : std::thread::hardware_concurrency() >= 2;
    const bool timed = options_.recipe_threads == 0;
    const bool two = count >= kThreadedFrom && (timed ? can_use_two && thread_choice_.two_threads()
                                                      : options_.recipe_threads == 2);
    const auto start = std::chrono::steady_clock::now();
    if (!two) {
      ShardRunner runner(*this, recipe, {0, 1}, nullptr);
      runner.run(first_iteration, count);
      runner.store_biases();
    } else {
      SpinBarrier barrier(2);
      ShardRunner second(*this, recipe, {1}, &barrier);
      worker_.start([&] { second.run(first_iteration, count); });
      ShardRunner first(*this, recipe, {0}, &barrier);
      first.run(first_iteration, count);
      worker_.wait();
      first.store_biases();
    }
    if (count >= kThreadedFrom && can_use_two && timed) {
      thread_choice_.took(
          two, count,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }

  void gibbs(std::span<uint8_t> states, int64_t n_chains, uint32_t seed, int64_t first_step,
             int64_t steps, int64_t first_chain) override {
    // The GEMM sampler of host/cpu_minibatch.cpp: tiles of chains across all cores.
    const Params params = model_.unpadded();
    if (n_chains < 0 || first_step < 0 || steps < 0 || first_chain < 0) {
      throw std::invalid_argument("gibbs: bad chain or step count");
    }
    if (static_cast<int64_t>(states.size()) != n_chains * params.visible) {
      throw std::invalid_argument("gibbs: states must be (n_chains, d)");
    }
    cpu::sample_chains(params, philox_key(seed, Purpose::sample), states.data(), n_chains,
                       first_step, steps, cpu_threads(), first_chain);
  }

  // Minibatch CD / PCD (host/cpu_minibatch.cpp) on the unpadded parameters.
  void train_minibatch(const Recipe& recipe, int64_t first_update, int64_t count) override {
    Params params = model_.unpadded();
    minibatch_.train(params, recipe, first_update, count, cpu_threads());
    model_ = PaddedModel(params);
  }
  TrainingState get_training_state() override { return minibatch_.state(); }
  void set_training_state(const TrainingState& state) override {
    minibatch_.set_state(model_.unpadded(), state);
  }

  // Evaluation: the references in host/evaluate.cpp and host/ais.cpp.
  double exact_log_partition(const ExactLogZRequest& request) override {
    return rbm::exact_log_partition(model_.unpadded(), LogZSum::automatic, request);
  }
  AisResult ais(const AisRequest& request) override { return ais_cpu(model_.unpadded(), request); }

 private:
  // Single-sample CD-k on shards of W's rows. Each shard's rows stay with one thread (and that
  // core's cache): it computes their part of W'x, their part of W h and their visible draws, and
  // updates them. The shards meet once per hidden layer (k + 1 times per iteration) to add their
  // partial sums of W'x, in a fixed order, so the result does not depend on the threading.
  static constexpr int kShards = 2;

  class ShardRunner {
   public:
    ShardRunner(CpuBackend& backend, const Recipe& recipe, std::vector<int> shards,
                SpinBarrier* barrier)
        : be_(backend),
          model_(backend.model_),
          recipe_(recipe),
          shards_(std::move(shards)),
          barrier_(barrier),
          b_(model_.b),
          prob_h0_(model_.Hp),
          prob_hk_(model_.Hp),
          h_(model_.Hp, 0.0f),
          pre_h0_(model_.hidden_type == HiddenType::ternary ? model_.Hp : 0),
          pre_hk_(model_.hidden_type == HiddenType::ternary ? model_.Hp : 0),
          pre_v_(model_.d),
          prob_v_(model_.d),
          uniforms_(std::max(model_.d, model_.Hp)),
          delta_(model_.Hp) {
      for (auto& active : active_k_) active.resize(static_cast<size_t>(model_.d));
    }

    // Shard stride in the exchange buffer, a whole number of 64-byte lines (no false sharing).
    static size_t partial_stride(int Hp) { return (static_cast<size_t>(Hp) + 15) / 16 * 16; }

    // One branch on the hidden type per call; the loop is compiled for each.
    void run(int64_t first_iteration, int64_t count) {
      if (model_.hidden_type == HiddenType::ternary) {
        run_typed<HiddenType::ternary>(first_iteration, count);
      } else {
        run_typed<HiddenType::binary>(first_iteration, count);
      }
    }

    // Every runner updates its own copy of b identically; one of them writes it back.
    void store_biases() { model_.b = b_; }

   private:
    template <HiddenType kType>
    void run_typed(int64_t first_iteration, int64_t count) {
      const int H = model_.H, Hp = model_.Hp;
      const uint64_t key = philox_key(recipe_.seed, Purpose::train);
      const float lr = recipe_.lr;
      int parity = 0;
      // The loop runs compiled for AVX-512 where the CPU has it (host/simd.hpp): its sigmoids
      // go twice as fast, with the same bits; the products W h stay 8 lanes wide.
      cpu::with_simd([&]() RBM_SIMD_BODY {
        for (int64_t t = first_iteration; t < first_iteration + count; ++t) {
          const uint64_t stream = static_cast<uint64_t>(t);
          const uint32_t pick = philox_block(key, stream, train_index_phase(), 0).word[0];
          const int64_t image = index_from_bits(pick, static_cast<uint32_t>(be_.rows_));
          // Positive phase: p(h | x0), also the first hidden draw's probabilities.
          for (const int s : shards_) {
            const auto [x0, n0] = image_rows(image, s);
            model_.sum_of_rows(x0, n0, partial(parity, s));
          }
          sync();
          combine<kType>(parity, prob_h0_.data(), pre_h0_.data());
          parity ^= 1;
          const float* prob_h = prob_h0_.data();
          const float* pre_h = pre_h0_.data();
          for (int step = 0; step < recipe_.k; ++step) {
            cpu::philox_uniforms(key, stream, train_hidden_phase(step), 0, H, uniforms_.data());
            if constexpr (kType == HiddenType::ternary) {
              for (int j = 0; j < H; ++j) h_[j] = ternary_draw(uniforms_[j], pre_h[j]);
            } else {
              for (int j = 0; j < H; ++j) h_[j] = bernoulli(uniforms_[j], prob_h[j]);
            }
            for (const int s : shards_) {
              const int begin = be_.shard_begin(s), n = be_.shard_end(s) - begin;
              model_.visible_preactivation(h_.data(), begin, begin + n, pre_v_.data());
              cpu::philox_uniforms(key, stream, train_visible_phase(step), begin, n,
                                   uniforms_.data());
              for (int i = 0; i < n; ++i) prob_v_[i] = sigmoid(pre_v_[i]);
              int* active = active_k_[s].data();
              n_active_k_[s] = cpu::indices_where_less(uniforms_.data(), prob_v_.data(), n, active);
              for (int k = 0; k < n_active_k_[s]; ++k) active[k] += begin;
              model_.sum_of_rows(active, n_active_k_[s], partial(parity, s));
            }
            sync();
            combine<kType>(parity, prob_hk_.data(), pre_hk_.data());
            parity ^= 1;
            prob_h = prob_hk_.data();
            pre_h = pre_hk_.data();
          }
          // SGD step on the CD-k gradient: dW = x0 ph0' - xk phk', db = ph0 - phk, da = x0 - xk.
          for (const int s : shards_) {
            const auto [x0, n0] = image_rows(image, s);
            for (int j = 0; j < Hp; ++j) delta_[j] = lr * prob_h0_[j];
            model_.add_to_rows(x0, n0, delta_.data());
            for (int j = 0; j < Hp; ++j) delta_[j] = -lr * prob_h[j];
            model_.add_to_rows(active_k_[s].data(), n_active_k_[s], delta_.data());
            if (!model_.a.empty()) {
              for (int k = 0; k < n0; ++k) model_.a[x0[k]] += lr;
              for (int k = 0; k < n_active_k_[s]; ++k) model_.a[active_k_[s][k]] -= lr;
            }
          }
          for (int j = 0; j < H; ++j) b_[j] += lr * (prob_h0_[j] - prob_h[j]);
        }
      });
    }

    void sync() {
      if (barrier_ != nullptr) barrier_->arrive_and_wait();
    }
    float* partial(int parity, int shard) {
      return be_.partials_.data() +
             (static_cast<size_t>(parity) * kShards + shard) * partial_stride(model_.Hp);
    }
    // prob (Hp) = sigm(b + (partial_0 + partial_1)), padded lanes 0. Ternary: pre (Hp) = the
    // pre-activation t = b + (partial_0 + partial_1), which the draw needs, and prob = G(t).
    template <HiddenType kType>
    void combine(int parity, float* prob, float* pre) {
      const float* p0 = partial(parity, 0);
      const float* p1 = partial(parity, 1);
      // Over all H units, then the padding zeroed: a `j < H ?` inside the loop kept GCC from
      // vectorizing it (400 scalar sigmoids an iteration at H 100, a tenth of its time).
      const int H = model_.H;
      if constexpr (kType == HiddenType::ternary) {
        for (int j = 0; j < H; ++j) pre[j] = b_[j] + (p0[j] + p1[j]);
        for (int j = 0; j < H; ++j) prob[j] = ternary_mean(pre[j]);
        std::fill(pre + H, pre + model_.Hp, 0.0f);
      } else {
        (void)pre;
        for (int j = 0; j < H; ++j) prob[j] = sigmoid(b_[j] + (p0[j] + p1[j]));
      }
      std::fill(prob + H, prob + model_.Hp, 0.0f);
    }
    // The active pixels of an image that lie in a shard's rows.
    std::pair<const int*, int> image_rows(int64_t image, int shard) const {
      const int64_t begin = shard == 0 ? be_.offsets_[image] : be_.image_split_[image];
      const int64_t end = shard == 0 ? be_.image_split_[image] : be_.offsets_[image + 1];
      return {be_.active_.data() + begin, static_cast<int>(end - begin)};
    }

    CpuBackend& be_;
    PaddedModel& model_;
    const Recipe& recipe_;
    const std::vector<int> shards_;
    SpinBarrier* const barrier_;
    std::vector<float> b_;                      // (Hp)
    std::vector<float> prob_h0_, prob_hk_, h_;  // (Hp)
    std::vector<float> pre_h0_, pre_hk_;        // (Hp) ternary: the pre-activations t
    std::vector<float> pre_v_, prob_v_;         // (d)
    std::vector<float> uniforms_;               // (max(d, Hp)): one layer's draws
    std::vector<float> delta_;                  // (Hp)
    std::vector<int> active_k_[kShards];        // drawn ones of x_k, per shard
    int n_active_k_[kShards] = {0, 0};
  };

  int shard_begin(int shard) const { return shard == 0 ? 0 : split_row_; }
  int shard_end(int shard) const { return shard == 0 ? split_row_ : d_; }

  PaddedModel model_;
  int64_t rows_ = 0;
  int d_ = 0;
  std::vector<int64_t> offsets_;      // (rows + 1)
  std::vector<int> active_;           // concatenated active pixel indices of all images
  int split_row_ = 0;                 // first row of shard 1
  std::vector<int64_t> image_split_;  // (rows): where each image's shard-1 pixels start
  std::vector<float> partials_;       // (2 parities, kShards, stride) partial sums of W'x
  Worker worker_;
  const CpuOptions options_;
  ThreadChoice thread_choice_;       // train_cd's one thread or two, when options_ leave it open
  cpu::MinibatchTrainer minibatch_;  // minibatch CD / PCD: images, epoch order, training state
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(CpuOptions options) {
  (void)forced_cpu_threads();  // a bad RBM_CPU_THREADS or RBM_CPU_SIMD is refused before any work
  (void)cpu::forced_simd();
  return std::make_unique<CpuBackend>(options);
}

}  // namespace rbm
