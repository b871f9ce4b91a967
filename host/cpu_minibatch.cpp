// The CPU's GEMM paths (see cpu_minibatch.hpp): a small pool of persistent threads, products on
// fixed tiles each on one thread (sums of W's rows, single-threaded OpenBLAS sgemm or sgemv), and
// the fused sigmoid + Bernoulli pass over their outputs (G(t) + ternary draw for the hidden units
// of a ternary model: hidden_rows).
#include "host/cpu_minibatch.hpp"

#include <cblas.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/errors.hpp"
#include "host/simd.hpp"
#include "host/single_threaded_blas.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm::cpu {
namespace {

// Persistent worker threads that run the tasks [0, n) of one job at a time: each thread takes the
// next task index until none is left. Tasks must write disjoint outputs; which thread runs a task
// does not change its result. One job at a time (a mutex serializes callers).
class TaskPool {
 public:
  static TaskPool& instance() {
    static TaskPool pool;
    return pool;
  }
  ~TaskPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  // task(index, worker) for index in [0, n_tasks) on `threads` threads (this one included);
  // worker in [0, threads) names per-thread scratch. Rethrows a task's exception.
  void run(int threads, int64_t n_tasks, const std::function<void(int64_t, int)>& task) {
    std::lock_guard job_lock(job_mutex_);
    threads = static_cast<int>(std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, n_tasks)));
    if (threads == 1) {
      for (int64_t i = 0; i < n_tasks; ++i) task(i, 0);
      return;
    }
    {
      std::lock_guard lock(mutex_);
      while (static_cast<int>(workers_.size()) < threads - 1) {
        const int index = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, index] { loop(index); });
      }
      task_ = &task;
      n_tasks_ = n_tasks;
      next_.store(0);
      helpers_ = threads - 1;
      finished_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    start_.notify_all();
    work(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return finished_ == helpers_; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  TaskPool() = default;

  void work(int worker) {
    for (int64_t i = next_.fetch_add(1); i < n_tasks_; i = next_.fetch_add(1)) {
      try {
        (*task_)(i, worker);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_tasks_);
      }
    }
  }

  void loop(int index) {
    uint64_t seen = 0;
    std::unique_lock lock(mutex_);
    while (true) {
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index > helpers_) continue;  // not needed for this job
      lock.unlock();
      work(index);
      lock.lock();
      if (++finished_ == helpers_) done_.notify_all();
    }
  }

  std::mutex job_mutex_, mutex_;
  std::condition_variable start_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int)>* task_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int helpers_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

int as_int(int64_t v) { return static_cast<int>(v); }

}  // namespace

// Which way X W costs less depends on the rows, X's density and OpenBLAS's kernels. Measured on the
// development machine (one core, OpenBLAS 0.3.21, d 784, H 100, 2026-12-03): the sgemm of the
// Haswell kernels (also Zen's) packs all of W on every call, 15 us for 1 row, 13 for 4, 30 for 16,
// 112 for 64, 1.53 a row for 256; the AVX-512 ones (SkylakeX, Cooperlake, SapphireRapids) have
// small-matrix kernels that do not: 3.6, 5, 22, 60 us, 0.84 a row for 256. The sum of the active
// rows costs 0.2 + 3.0 rho us a row, rho the share of ones (0.34 at 5%, 0.80 at 20%; listing the
// ones is most of the 0.2). In units of a whole row's sum (3 us), the sum is rows (0.07 + rho) and
// an sgemm 4.3 + 0.5 rows (Haswell) or 1.2 + 0.28 rows (AVX-512). At H 500 the AVX-512 kernels'
// break-even at 256 rows is 19% (the sum's rows are 16-lane code there), close to H 100's 21%.
// Every family but the AVX-512 ones gets the rule measured with the Haswell kernels.
bool sums_active_rows(int64_t ones, int64_t rows, int d, bool small_matrix_kernels) {
  const int64_t dd = d;
  return small_matrix_kernels ? 5 * ones < dd * (6 + rows)        // rho < 1.2 / rows + 0.2
                              : 5 * ones < dd * (21 + 2 * rows);  // rho < 4.2 / rows + 0.4
}

bool blas_has_small_matrix_kernels() {
  // A build for one CPU names it in capitals (SKYLAKEX); DYNAMIC_ARCH's choice as here.
  const char* kernels = openblas_get_corename();
  if (kernels == nullptr) return false;
  for (const char* name : {"SkylakeX", "Cooperlake", "SapphireRapids"}) {
    if (strcasecmp(kernels, name) == 0) return true;
  }
  return false;
}

void hidden_products(const Params& p, const float* X, int64_t rows, float* out, int* active) {
  const int d = p.visible, H = p.hidden;
  int64_t ones = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = X + r * d;
    int row_ones = 0;  // 32-bit: the loop vectorizes (64-bit counts took 0.11 us a 784-pixel row)
    for (int i = 0; i < d; ++i) row_ones += x[i] != 0.0f ? 1 : 0;
    ones += row_ones;
  }
  static const bool small_matrix_kernels = blas_has_small_matrix_kernels();
  if (!sums_active_rows(ones, rows, d, small_matrix_kernels)) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, as_int(rows), H, d, 1.0f, X, d,
                p.W.data(), H, 0.0f, out, H);
    return;
  }
  // sum_of_rows takes whole 8-column blocks: columns [0, H8), then the last 8 columns into a side
  // buffer when 8 does not divide H, whose last H - H8 are the columns still missing.
  const int H8 = H / 8 * 8;
  thread_local std::vector<float> zeros;  // only ever zeros: grown, never refilled
  if (zeros.size() < static_cast<size_t>(d)) zeros.resize(static_cast<size_t>(d), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * H;
    const int n = indices_where_less(zeros.data(), X + r * d, d, active);  // where x is 1
    if (H8 > 0) sum_of_rows(p.W.data(), static_cast<size_t>(H), active, n, H8, o);
    if (H8 == H) continue;
    if (H >= 8) {
      float last8[8];
      sum_of_rows(p.W.data() + (H - 8), static_cast<size_t>(H), active, n, 8, last8);
      std::copy(last8 + (8 - (H - H8)), last8 + 8, o + H8);
    } else {
      for (int j = 0; j < H; ++j) {
        float sum = 0.0f;
        for (int k = 0; k < n; ++k) sum += p.W[static_cast<size_t>(active[k]) * H + j];
        o[j] = sum;
      }
    }
  }
}

// Hs W' for a few rows (kMaxGemvRows): an sgemm with the second operand transposed cost 18 to 22 us
// for 2 to 4 rows with either of OpenBLAS's kernel families (as above), an sgemv 4 us a row (29
// against 23 for 8 rows).
void visible_products(const Params& p, const float* Hs, int64_t rows, float* out) {
  const int d = p.visible, H = p.hidden;
  if (rows > kMaxGemvRows) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, as_int(rows), d, H, 1.0f, Hs, H,
                p.W.data(), H, 0.0f, out, d);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, d, H, 1.0f, p.W.data(), H, Hs + r * H, 1, 0.0f,
                out + r * d, 1);
  }
}

namespace {

// The hidden units' pass over a GEMM's output: sigmoid_bernoulli_rows for binary units; for
// ternary ones (host/model.hpp), with t = pre[r, u] + bias[u], prob[r, u] = G(t) = ternary_mean(t)
// and sample[r, u] = ternary_draw(uniform(r, u), t) in {-1, 0, 1}, the same uniforms. prob may
// alias pre; sample may alias pre only without prob. One branch per call.
void hidden_rows(HiddenType type, float* pre, int64_t rows, int n, const float* bias, uint64_t key,
                 uint64_t stream0, uint32_t phase, float* prob, float* sample, float* uniforms) {
  if (type == HiddenType::binary) {
    sigmoid_bernoulli_rows(pre, rows, n, bias, key, stream0, phase, prob, sample, uniforms);
    return;
  }
  if (sample == pre && prob != nullptr) {
    throw std::logic_error("hidden_rows: the draws would overwrite the pre-activations");
  }
  with_simd([&]() RBM_SIMD_BODY {
    for (int64_t r = 0; r < rows; ++r) {
      float* t = pre + r * n;
      for (int u = 0; u < n; ++u) t[u] += bias[u];
      if (sample != nullptr) {
        philox_uniforms(key, stream0 + static_cast<uint64_t>(r), phase, 0, n, uniforms);
        float* s = sample + r * n;
        for (int u = 0; u < n; ++u) s[u] = ternary_draw(uniforms[u], t[u]);
      }
      if (prob != nullptr) {
        float* m = prob + r * n;
        for (int u = 0; u < n; ++u) m[u] = ternary_mean(t[u]);
      }
    }
  });
}

// Per-thread scratch of the chain steps: h (rows, H), uniforms (max(d, H)) and active (d).
struct Scratch {
  std::vector<float> h, uniforms;
  std::vector<int> active;
  void fit(int64_t rows, const Params& p) {
    h.resize(static_cast<size_t>(rows * p.hidden));
    uniforms.resize(static_cast<size_t>(std::max(p.visible, p.hidden)));
    active.resize(static_cast<size_t>(p.visible));
  }
};

// Adds the thread CPU time since the last lap to a part of `seconds`; nothing when it is null.
class PartClock {
 public:
  explicit PartClock(SamplerPartSeconds* seconds) : seconds_(seconds), last_(now()) {}
  void lap(double SamplerPartSeconds::*part) {
    if (seconds_ == nullptr) return;
    const double t = now();
    seconds_->*part += t - last_;
    last_ = t;
  }

 private:
  double now() const {
    if (seconds_ == nullptr) return 0.0;
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  }
  SamplerPartSeconds* seconds_;
  double last_;
};

// `steps` sampler steps of the chains X (rows, d) of 0/1 floats, in place; row r is stream
// first_chain + r, global steps first_step ... (the sampler's phases). seconds: null, or where
// each part's thread CPU time is added.
void chain_steps(const Params& p, const float* b, const float* a, uint64_t key, float* X,
                 int64_t rows, int64_t first_chain, int64_t first_step, int64_t steps,
                 Scratch& scratch, SamplerPartSeconds* seconds = nullptr) {
  const uint64_t stream0 = static_cast<uint64_t>(first_chain);
  PartClock clock(seconds);
  for (int64_t g = first_step; g < first_step + steps; ++g) {
    hidden_products(p, X, rows, scratch.h.data(), scratch.active.data());
    clock.lap(&SamplerPartSeconds::hidden_product);
    hidden_rows(p.hidden_type, scratch.h.data(), rows, p.hidden, b, key, stream0,
                sample_hidden_phase(g), nullptr, scratch.h.data(), scratch.uniforms.data());
    clock.lap(&SamplerPartSeconds::pass_hidden);
    visible_products(p, scratch.h.data(), rows, X);
    clock.lap(&SamplerPartSeconds::visible_product);
    sigmoid_bernoulli_rows(X, rows, p.visible, a, key, stream0, sample_visible_phase(g), nullptr, X,
                           scratch.uniforms.data());
    clock.lap(&SamplerPartSeconds::pass_visible);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void sigmoid_bernoulli_rows(float* pre, int64_t rows, int n, const float* bias, uint64_t key,
                            uint64_t stream0, uint32_t phase, float* prob, float* sample,
                            float* uniforms) {
  with_simd([&]() RBM_SIMD_BODY {
    for (int64_t r = 0; r < rows; ++r) {
      float* t = pre + r * n;
      for (int u = 0; u < n; ++u) t[u] = sigmoid(t[u] + bias[u]);
      if (prob != nullptr && prob != pre) std::copy_n(t, n, prob + r * n);
      if (sample != nullptr) {
        philox_uniforms(key, stream0 + static_cast<uint64_t>(r), phase, 0, n, uniforms);
        float* s = sample + r * n;
        for (int u = 0; u < n; ++u) s[u] = uniforms[u] < t[u] ? 1.0f : 0.0f;
      }
    }
  });
}

void sample_chains(const Params& params, uint64_t key, uint8_t* states, int64_t n_chains,
                   int64_t first_step, int64_t steps, int threads, int64_t first_chain,
                   SamplerPartSeconds* part_seconds) {
  if (n_chains <= 0 || steps <= 0) return;
  const int d = params.visible;
  const std::vector<float> zeros(static_cast<size_t>(d), 0.0f);
  const float* a = params.has_visible_bias() ? params.a.data() : zeros.data();
  const SingleThreadedBlas one_blas_thread;
  const int64_t tiles = ceil_div(n_chains, kSampleTile);
  threads = static_cast<int>(std::min<int64_t>(threads, tiles));
  std::vector<Scratch> scratch(static_cast<size_t>(std::max(threads, 1)));
  std::vector<std::vector<float>> X(scratch.size());
  std::vector<SamplerPartSeconds> worker_seconds(scratch.size());
  TaskPool::instance().run(threads, tiles, [&](int64_t tile, int worker) {
    const int64_t first = tile * kSampleTile, rows = std::min(kSampleTile, n_chains - first);
    std::vector<float>& x = X[static_cast<size_t>(worker)];
    x.resize(static_cast<size_t>(kSampleTile * d));
    scratch[static_cast<size_t>(worker)].fit(kSampleTile, params);
    uint8_t* s = states + first * d;
    for (int64_t k = 0; k < rows * d; ++k) x[static_cast<size_t>(k)] = s[k] != 0 ? 1.0f : 0.0f;
    chain_steps(params, params.b.data(), a, key, x.data(), rows, first_chain + first, first_step,
                steps, scratch[static_cast<size_t>(worker)],
                part_seconds != nullptr ? &worker_seconds[static_cast<size_t>(worker)] : nullptr);
    for (int64_t k = 0; k < rows * d; ++k) s[k] = static_cast<uint8_t>(x[static_cast<size_t>(k)]);
  });
  if (part_seconds == nullptr) return;
  for (const SamplerPartSeconds& w : worker_seconds) {
    part_seconds->hidden_product += w.hidden_product;
    part_seconds->pass_hidden += w.pass_hidden;
    part_seconds->visible_product += w.visible_product;
    part_seconds->pass_visible += w.pass_visible;
  }
}

// --- minibatch CD-k / PCD-k -----------------------------------------------------------------

namespace {
constexpr int64_t kRowTile = 64;   // rows of X0 or chains per task
constexpr int64_t kGradRows = 64;  // rows of W per gradient task
constexpr int kGradCols = 256;     // at most this many columns of W per gradient task

// A job spread over more threads pays for waking them: a futex wake each, microseconds on an idle
// machine and tens of them on a busy one, when the gradient of a --batch 1 update takes 23 us on
// one thread. So a job gets a thread per 2^20 multiply-adds of its work (about 50 us), at least
// one. The tasks stay the same, so the results do too.
int threads_for(int threads, double multiply_adds) {
  return static_cast<int>(
      std::clamp(multiply_adds / 1048576.0, 1.0, static_cast<double>(std::max(threads, 1))));
}
}  // namespace

struct MinibatchTrainer::Impl {
  int64_t rows = 0;
  int d = 0;
  std::vector<uint8_t> pixels;  // (rows, d)

  int64_t perm_epoch = -1;
  uint32_t perm_seed = 0;
  std::vector<uint32_t> permutation;

  // The training state.
  std::vector<float> vW, vb, va;
  int64_t n_chains = 0;
  std::vector<float> chains;  // (n_chains, d) of 0/1

  // One update's buffers.
  std::vector<float> X0, Q0;       // (B, d) the batch, (B, H) PH0 / B
  std::vector<float> Xk, Qk;       // (B, d) CD's chain ends, (N, H) -PHk / N
  std::vector<float> zeros_d;      // (d) the visible bias of a model without one
  std::vector<float> plus, minus;  // column sums of the bias step
  std::vector<Scratch> scratch;    // per thread

  const std::vector<uint32_t>& epoch_order(uint32_t seed, int64_t epoch) {
    if (epoch != perm_epoch || seed != perm_seed ||
        permutation.size() != static_cast<size_t>(rows)) {
      permutation = epoch_permutation(seed, epoch, rows);
      perm_epoch = epoch;
      perm_seed = seed;
    }
    return permutation;
  }

  void init_chains(uint32_t seed, int64_t n) {
    n_chains = n;
    chains.resize(static_cast<size_t>(n * d));
    for (int64_t c = 0; c < n; ++c) {
      const uint8_t* image =
          pixels.data() + static_cast<int64_t>(initial_chain_image(seed, c, rows)) * d;
      for (int i = 0; i < d; ++i) chains[static_cast<size_t>(c * d + i)] = image[i] ? 1.0f : 0.0f;
    }
  }

  void update(Params& p, const Recipe& recipe, int64_t u, int64_t total, int threads);
  // g_j = pos_scale sum_r pos[r, j] + neg_scale sum_r neg[r, j]; v = m v + lr g; bias += v.
  void bias_step(float* bias, float* v, const float* pos, int64_t n_pos, const float* neg,
                 int64_t n_neg, int64_t units, float pos_scale, float neg_scale, float lr,
                 float momentum);
};

MinibatchTrainer::MinibatchTrainer() : impl_(std::make_unique<Impl>()) {}
MinibatchTrainer::~MinibatchTrainer() = default;

void MinibatchTrainer::stage(const Dataset& train) {
  impl_->rows = train.rows;
  impl_->d = train.cols();
  impl_->pixels = train.pixels;
  impl_->perm_epoch = -1;
  clear_state();
}

void MinibatchTrainer::clear_state() {
  impl_->vW.clear();
  impl_->vb.clear();
  impl_->va.clear();
  impl_->n_chains = 0;
  impl_->chains.clear();
}

TrainingState MinibatchTrainer::state() const {
  TrainingState s;
  s.vW = impl_->vW;
  s.vb = impl_->vb;
  s.va = impl_->va;
  s.n_chains = impl_->n_chains;
  s.chains.resize(impl_->chains.size());
  for (size_t k = 0; k < s.chains.size(); ++k) s.chains[k] = impl_->chains[k] != 0.0f ? 1 : 0;
  return s;
}

void MinibatchTrainer::set_state(const Params& params, const TrainingState& s) {
  const size_t d = static_cast<size_t>(params.visible), H = static_cast<size_t>(params.hidden);
  const auto fits = [](const std::vector<float>& v, size_t n) {
    return v.empty() || v.size() == n;
  };
  if (!fits(s.vW, d * H) || !fits(s.vb, H) || !fits(s.va, params.has_visible_bias() ? d : 0)) {
    throw InputError("training state: the momentum velocities do not fit the model");
  }
  if (s.n_chains < 0 || s.chains.size() != static_cast<size_t>(s.n_chains) * d) {
    throw InputError("training state: the chains are not (n_chains, d)");
  }
  impl_->vW = s.vW;
  impl_->vb = s.vb;
  impl_->va = s.va;
  impl_->n_chains = s.n_chains;
  impl_->chains.resize(s.chains.size());
  for (size_t k = 0; k < s.chains.size(); ++k) impl_->chains[k] = s.chains[k] != 0 ? 1.0f : 0.0f;
}

void MinibatchTrainer::train(Params& params, const Recipe& recipe, int64_t first, int64_t count,
                             int threads) {
  Impl& m = *impl_;
  if (m.rows == 0) throw std::logic_error("train_minibatch: stage() the training images first");
  if (params.visible != m.d)
    throw std::logic_error("train_minibatch: model and data disagree on d");
  check_minibatch_recipe(recipe, m.rows);
  if (first < 0 || count < 0) throw std::invalid_argument("train_minibatch: bad updates");
  if (count == 0) return;
  const int64_t N = negative_samples(recipe);
  if (recipe.pcd && m.n_chains != 0 && m.n_chains != N) {
    throw InputError("train_minibatch: the backend holds " + std::to_string(m.n_chains) +
                     " PCD chains, the recipe asks for " + std::to_string(N));
  }
  const size_t d = static_cast<size_t>(params.visible), H = static_cast<size_t>(params.hidden);
  if (m.vW.empty()) m.vW.assign(d * H, 0.0f);
  if (m.vb.empty()) m.vb.assign(H, 0.0f);
  if (m.va.empty() && params.has_visible_bias()) m.va.assign(d, 0.0f);
  if (recipe.pcd && m.n_chains == 0) m.init_chains(recipe.seed, N);
  const int64_t total = total_updates(recipe, m.rows);
  const SingleThreadedBlas one_blas_thread;
  for (int64_t u = first; u < first + count; ++u) m.update(params, recipe, u, total, threads);
}

void MinibatchTrainer::Impl::update(Params& p, const Recipe& recipe, int64_t u, int64_t total,
                                    int threads) {
  const int64_t B = recipe.batch, N = negative_samples(recipe), H = p.hidden;
  const int k = recipe.k;
  const uint64_t key = philox_key(recipe.seed, Purpose::train);
  const int64_t per_epoch = batches_per_epoch(recipe, rows);
  const std::vector<uint32_t>& order = epoch_order(recipe.seed, u / per_epoch);
  const int64_t batch_start = (u % per_epoch) * B;

  X0.resize(static_cast<size_t>(B * d));
  Q0.resize(static_cast<size_t>(B * H));
  Qk.resize(static_cast<size_t>(N * H));
  if (!recipe.pcd) Xk.resize(static_cast<size_t>(B * d));
  zeros_d.assign(static_cast<size_t>(d), 0.0f);
  const float* a = p.has_visible_bias() ? p.a.data() : zeros_d.data();
  const float* b = p.b.data();
  float* Xneg = recipe.pcd ? chains.data() : Xk.data();
  scratch.resize(static_cast<size_t>(std::max(threads, 1)));
  const float inv_b = 1.0f / static_cast<float>(B), minus_inv_n = -1.0f / static_cast<float>(N);

  // Positive phase and negative chains, in tasks of kRowTile rows: the batch's tiles first, then
  // (PCD) the chains' tiles.
  const int64_t batch_tiles = (B + kRowTile - 1) / kRowTile;
  const int64_t chain_tiles = recipe.pcd ? (N + kRowTile - 1) / kRowTile : 0;
  const double dH = static_cast<double>(d) * static_cast<double>(H);
  const double chain_work =  // CD: 2k + 1 products a row; PCD: the batch's one, 2k + 1 a chain
      recipe.pcd ? dH * static_cast<double>(B + (2 * k + 1) * N)
                 : dH * static_cast<double>(B * (2 * k + 1));
  const int chain_threads = threads_for(threads, chain_work);
  TaskPool::instance().run(chain_threads, batch_tiles + chain_tiles, [&](int64_t task, int worker) {
    Scratch& s = scratch[static_cast<size_t>(worker)];
    s.fit(kRowTile, p);
    float* uniforms = s.uniforms.data();
    if (task < batch_tiles) {
      const int64_t r0 = task * kRowTile, n = std::min(kRowTile, B - r0);
      float* x0 = X0.data() + r0 * d;
      for (int64_t r = 0; r < n; ++r) {
        const uint8_t* image =
            pixels.data() + static_cast<int64_t>(order[batch_start + r0 + r]) * d;
        for (int i = 0; i < d; ++i) x0[r * d + i] = image[i] ? 1.0f : 0.0f;
      }
      float* ph0 = Q0.data() + r0 * H;
      hidden_products(p, x0, n, ph0, s.active.data());
      if (recipe.pcd) {
        hidden_rows(p.hidden_type, ph0, n, as_int(H), b, key, 0, 0, ph0, nullptr, uniforms);
      } else {
        // CD-k: row r's chain from x0, streams u B + r, the single-sample phases.
        const uint64_t stream0 = static_cast<uint64_t>(u * B + r0);
        float* h = s.h.data();
        float* xk = Xk.data() + r0 * d;
        float* phk = Qk.data() + r0 * H;
        hidden_rows(p.hidden_type, ph0, n, as_int(H), b, key, stream0, train_hidden_phase(0), ph0,
                    h, uniforms);
        for (int step = 0; step < k; ++step) {
          visible_products(p, h, n, xk);
          sigmoid_bernoulli_rows(xk, n, d, a, key, stream0, train_visible_phase(step), nullptr, xk,
                                 uniforms);
          hidden_products(p, xk, n, phk, s.active.data());
          const bool last = step + 1 == k;
          hidden_rows(p.hidden_type, phk, n, as_int(H), b, key, stream0,
                      train_hidden_phase(step + 1), phk, last ? nullptr : h, uniforms);
        }
        for (int64_t q = 0; q < n * H; ++q) phk[q] *= minus_inv_n;
      }
      for (int64_t q = 0; q < n * H; ++q) ph0[q] *= inv_b;
    } else {
      // PCD-k: the sampler's k steps on these chains, global steps u k .. u k + k - 1.
      const int64_t c0 = (task - batch_tiles) * kRowTile, n = std::min(kRowTile, N - c0);
      float* v = chains.data() + c0 * d;
      chain_steps(p, b, a, key, v, n, c0, u * k, k, s);
      float* phk = Qk.data() + c0 * H;
      hidden_products(p, v, n, phk, s.active.data());
      hidden_rows(p.hidden_type, phk, n, as_int(H), b, key, 0, 0, phk, nullptr, uniforms);
      for (int64_t q = 0; q < n * H; ++q) phk[q] *= minus_inv_n;
    }
  });

  // Gradient and step, in tiles of W: G = X0' (PH0 / B) + Xneg' (-PHk / N), then
  // v = m v + lr (G - wd W), W += v on the tile.
  const float lr = learning_rate_at(recipe, u, total);
  const float momentum = recipe.momentum, decay = recipe.weight_decay;
  const int64_t col_tiles = (H + kGradCols - 1) / kGradCols;
  const int64_t cols_per_tile = (H + col_tiles - 1) / col_tiles;
  const int64_t row_tiles = (d + kGradRows - 1) / kGradRows;
  const double gradient_work = dH * static_cast<double>(B + N + 1);
  const int gradient_threads = threads_for(threads, gradient_work);
  TaskPool::instance().run(gradient_threads, row_tiles * col_tiles, [&](int64_t task, int worker) {
    const int64_t i0 = (task / col_tiles) * kGradRows, j0 = (task % col_tiles) * cols_per_tile;
    const int64_t ni = std::min<int64_t>(kGradRows, d - i0), nj = std::min(cols_per_tile, H - j0);
    std::vector<float>& g = scratch[static_cast<size_t>(worker)].h;  // reused: (ni, nj)
    g.resize(static_cast<size_t>(kGradRows * kGradCols));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, as_int(ni), as_int(nj), as_int(B), 1.0f,
                X0.data() + i0, d, Q0.data() + j0, as_int(H), 0.0f, g.data(), as_int(nj));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, as_int(ni), as_int(nj), as_int(N), 1.0f,
                Xneg + i0, d, Qk.data() + j0, as_int(H), 1.0f, g.data(), as_int(nj));
    for (int64_t i = 0; i < ni; ++i) {
      float* w = p.W.data() + (i0 + i) * H + j0;
      float* v = vW.data() + (i0 + i) * H + j0;
      const float* gi = g.data() + i * nj;
      for (int64_t j = 0; j < nj; ++j) {
        v[j] = momentum * v[j] + lr * (gi[j] - decay * w[j]);
        w[j] += v[j];
      }
    }
  });

  // Biases, as kernels/minibatch.cu's bias_step: g = pos_scale sum_r pos[r] + neg_scale sum_r
  // neg[r]; gb from Q0 and Qk (already scaled), ga = mean(X0) - mean(Xneg).
  bias_step(p.b.data(), vb.data(), Q0.data(), B, Qk.data(), N, H, 1.0f, 1.0f, lr, momentum);
  if (p.has_visible_bias()) {
    bias_step(p.a.data(), va.data(), X0.data(), B, Xneg, N, d, inv_b, minus_inv_n, lr, momentum);
  }
}

void MinibatchTrainer::Impl::bias_step(float* bias, float* v, const float* pos, int64_t n_pos,
                                       const float* neg, int64_t n_neg, int64_t units,
                                       float pos_scale, float neg_scale, float lr, float momentum) {
  plus.assign(static_cast<size_t>(units), 0.0f);
  minus.assign(static_cast<size_t>(units), 0.0f);
  for (int64_t r = 0; r < n_pos; ++r) {
    for (int64_t j = 0; j < units; ++j) plus[j] += pos[r * units + j];
  }
  for (int64_t r = 0; r < n_neg; ++r) {
    for (int64_t j = 0; j < units; ++j) minus[j] += neg[r * units + j];
  }
  for (int64_t j = 0; j < units; ++j) {
    v[j] = momentum * v[j] + lr * (pos_scale * plus[j] + neg_scale * minus[j]);
    bias[j] += v[j];
  }
}

}  // namespace rbm::cpu
