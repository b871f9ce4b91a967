// The CUDA backend (design.md, "Data flow"): the binarized images resident on the device, cuBLAS
// GEMVs for W'x and W h, the fused sigmoid + Bernoulli kernel (G(t) + ternary draw for a ternary
// model's hidden units, chosen per launch), the image index drawn on the device, the CD-k update
// in place. The iteration that names the draws lives in device memory, so
// one training iteration is captured in a CUDA graph and replayed with no host round trip.
#include "kernels/cuda_backend.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/ais.hpp"
#include "host/errors.hpp"
#include "host/evaluate.hpp"
#include "host/model.hpp"
#include "kernels/ais.cuh"
#include "kernels/cd_update.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"
#include "kernels/exact_log_z.cuh"
#include "kernels/fused_cd.cuh"
#include "kernels/gibbs_sample.cuh"
#include "kernels/minibatch.cuh"
#include "kernels/philox.h"

namespace rbm {
namespace {

using cuda::DeviceBuffer;
using cuda::Event;

// A user-owned cuBLAS workspace (NVIDIA's recommended size for Hopper), so that cuBLAS allocates
// nothing while a graph is being captured.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

// AIS temperatures enqueued between two looks at a stop request. A temperature is two GEMMs and
// two kernels, tens of microseconds at the metrics' 100 runs (launch-bound), so a chunk is a
// millisecond or so there: a stop comes within a few ms, and the 14500-temperature schedule pays
// about 450 event waits, each overlapped with a queued chunk.
constexpr int64_t kAisTemperaturesPerLook = 32;

// What a captured iteration bakes in besides the buffers: the draws' key, the step size, k.
struct StepConfig {
  uint64_t key = 0;
  float lr = 0.0f;
  int k = 0;
  bool operator==(const StepConfig&) const = default;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(CudaOptions options) : options_(options) {
    CUBLAS_CHECK(cublasSetStream(blas_.get(), stream_.get()));
    // cublasSetStream resets the workspace to cuBLAS's own pool, so ours is set after it.
    CUBLAS_CHECK(cublasSetWorkspace(blas_.get(), workspace_.data(), workspace_.bytes()));
    CUBLAS_CHECK(cublasSetPointerMode(blas_.get(), CUBLAS_POINTER_MODE_HOST));
    CUBLAS_CHECK(cublasSetAtomicsMode(blas_.get(), CUBLAS_ATOMICS_NOT_ALLOWED));  // reproducible
  }

  std::string name() const override { return "cuda"; }
  // With the fused engine, once it has trained, the variant too: its sums over the cluster's CTAs
  // are in another order on another variant, so the trained bits depend on it (run.json keeps
  // this description).
  std::string device_description() const override {
    std::string description = cuda_device_description();
    if (options_.engine != CudaEngine::gemv && fused_choice_.variant.cluster_ctas > 0 &&
        fused_choice_.why.empty()) {
      description += ", fused engine on clusters of " +
                     std::to_string(fused_choice_.variant.cluster_ctas) + " CTAs x " +
                     std::to_string(fused_choice_.variant.threads) + " threads";
    }
    return description;
  }

  void stage(const Dataset& train) override {
    if (train.rows <= 0) throw std::invalid_argument("stage: no training images");
    if (train.rows > int64_t{UINT32_MAX}) throw std::invalid_argument("stage: too many images");
    const size_t n = static_cast<size_t>(train.rows) * static_cast<size_t>(train.cols());
    if (train.pixels.size() != n) throw std::invalid_argument("stage: pixels are not (rows, d)");
    // Forget the old images before freeing them: if the allocation or the copy below throws, no
    // graph (it baked in the image pointer and the row count) or trainer still points at them.
    graph_.reset();
    rows_ = 0;
    d_ = 0;
    minibatch_.stage(nullptr, 0, 0);
    images_.resize(n);
    images_.upload(train.pixels.data(), n, stream_.get());
    stream_.synchronize();
    rows_ = train.rows;
    d_ = train.cols();
    minibatch_.stage(images_.data(), rows_, d_);
  }

  void set_params(const Params& params) override {
    check_shapes(params);
    const int d = params.visible, H = params.hidden;
    const bool has_a = params.has_visible_bias();
    if (!params_set_ || d != visible_ || H != hidden_ || has_a != has_a_ ||
        params.hidden_type != hidden_type_) {
      // Forget the old state first: a resize that throws (out of memory) leaves no graph or
      // parameters that name freed buffers, and the next call allocates again.
      params_set_ = false;
      graph_.reset();  // it baked in the buffers, shapes and the hidden kernels' type
      visible_ = d;
      hidden_ = H;
      has_a_ = has_a;
      hidden_type_ = params.hidden_type;
      W_.resize(static_cast<size_t>(d) * H);
      b_.resize(H);
      a_.resize(has_a ? d : 0);
      x0_.resize(d);
      xk_.resize(d);
      vpre_.resize(d);
      hpre_.resize(H);
      ph0_.resize(H);
      phk_.resize(H);
      h_.resize(H);
    }
    const cudaStream_t s = stream_.get();
    W_.upload(params.W.data(), params.W.size(), s);
    b_.upload(params.b.data(), params.b.size(), s);
    a_.upload(params.a.data(), params.a.size(), s);
    stream_.synchronize();
    params_set_ = true;
    minibatch_.clear_state();
  }

  Params get_params() override {
    require_params("get_params");
    Params params;
    params.visible = visible_;
    params.hidden = hidden_;
    params.hidden_type = hidden_type_;
    params.W.resize(W_.size());
    params.b.resize(b_.size());
    params.a.resize(a_.size());
    const cudaStream_t s = stream_.get();
    W_.download(params.W.data(), params.W.size(), s);
    b_.download(params.b.data(), params.b.size(), s);
    a_.download(params.a.data(), params.a.size(), s);  // downloads return with the data on the host
    return params;
  }

  void train_cd(const Recipe& recipe, int64_t first_iteration, int64_t count) override {
    if (rows_ == 0) throw std::logic_error("train_cd: stage() the training images first");
    require_params("train_cd");
    if (visible_ != d_) throw std::logic_error("train_cd: model and data disagree on d");
    if (recipe.k < 1) throw std::invalid_argument("train_cd: k must be at least 1");
    if (first_iteration < 0 || count < 0) throw std::invalid_argument("train_cd: bad iterations");
    if (count == 0) return;
    const StepConfig config{philox_key(recipe.seed, Purpose::train), recipe.lr, recipe.k};
    const cudaStream_t s = stream_.get();
    if (options_.engine != CudaEngine::gemv) {
      // The variant and the device's verdict, once per model shape: every piece of a run
      // trains on the same variant (and engine), so pieces give the bits one call gives.
      if (fused_choice_.d != visible_ || fused_choice_.H != hidden_) {
        const FusedVariant variant = options_.fused_variant.cluster_ctas == 0
                                         ? fused_product_variant(visible_, hidden_)
                                         : options_.fused_variant;
        fused_choice_ = {visible_, hidden_, variant,
                         cuda::fused_cd_variant_unsupported_reason(visible_, hidden_, variant)};
      }
    }
    // The default takes gemv where fused cannot run (no clusters before compute capability 9.0, a
    // W too large for a cluster's shared memory); a user's --engine fused is refused there.
    if (options_.engine == CudaEngine::fused ||
        (options_.engine == CudaEngine::fused_or_gemv && fused_choice_.why.empty())) {
      const FusedVariant variant = fused_choice_.variant;
      const std::string& why = fused_choice_.why;
      // A user's choice that this device or model cannot take: exit 2, and a new run's directory
      // is removed again (host/trainer.cpp).
      if (!why.empty()) {
        throw InputError("--engine fused: " + why +
                         "; --engine gemv trains any model (and the default takes it where fused "
                         "cannot run)");
      }
      cuda::FusedCdArgs args;
      args.problem = {W_.data(), b_.data(),  has_a_ ? a_.data() : nullptr,
                      visible_,  hidden_,    images_.data(),
                      rows_,     config.key, config.lr,
                      config.k};
      args.hidden_type = hidden_type_;
      args.first_iteration = first_iteration;
      args.count = count;
      cuda::launch_fused_cd(args, variant, s);
      stream_.synchronize();
      return;
    }
    cuda::launch_set_counter(counter_.data(), first_iteration, s);
    int64_t done = 0;
    if (options_.use_graph && !(graph_ && graph_config_ == config)) {
      // Warm-up: a real iteration (t = first_iteration) that also loads every kernel and lets
      // cuBLAS pick its own before the capture.
      enqueue_iteration(config);
      ++done;
      try {
        capture_iteration(config);
      } catch (const std::runtime_error& e) {
        if (!options_.graph_fallback) throw;
        // The graph only saves launch latency. The warm-up iteration stays applied and the rest
        // run as plain launches, so the iteration count stays right; a device fault behind the
        // failure resurfaces at the next check.
        std::fprintf(stderr, "rbm_cuda: CUDA graph capture failed, using plain launches: %s\n",
                     e.what());
        options_.use_graph = false;
      }
    }
    if (options_.use_graph) {
      for (; done < count; ++done) CUDA_CHECK(cudaGraphLaunch(graph_.get(), s));
    }
    for (; done < count; ++done) enqueue_iteration(config);
    stream_.synchronize();
  }

  void gibbs(std::span<uint8_t> states, int64_t n_chains, uint32_t seed, int64_t first_step,
             int64_t steps, int64_t first_chain) override {
    require_params("gibbs");
    // kernels/minibatch.cu: all chains (or options_.gibbs_batch_chains at a time) resident, the
    // memory checked first, two SGEMMs and two fused in-place kernels per step, no host sync.
    cuda::gibbs_host_states(view(), states, n_chains, philox_key(seed, Purpose::sample), first_step,
                            steps, first_chain,
                            {options_.gibbs_batch_chains, options_.packed_states, options_.tf32});
  }

  // Minibatch CD / PCD (kernels/minibatch.cu).
  void train_minibatch(const Recipe& recipe, int64_t first_update, int64_t count) override {
    require_params("train_minibatch");
    minibatch_.train(view(), recipe, first_update, count);
    stream_.synchronize();
  }
  TrainingState get_training_state() override {
    require_params("get_training_state");
    return minibatch_.state(view());
  }
  void set_training_state(const TrainingState& state) override {
    require_params("set_training_state");
    minibatch_.set_state(view(), state);
  }

  // The kernel sums all the states in one launch and cannot stop part way: the stop request is
  // looked at before and after it, and the count advanced by all the states at the end.
  double exact_log_partition(const ExactLogZRequest& request) override {
    require_params("exact_log_partition");
    if (hidden_type_ == HiddenType::ternary && hidden_ > kMaxExactTernaryHidden) {
      throw InputError(
          "exact log Z of a ternary model enumerates 3^H hidden states and needs H <= " +
          std::to_string(kMaxExactTernaryHidden) + " (this model has " + std::to_string(hidden_) +
          ")");
    }
    if (hidden_ > 30) throw InputError("exact log Z needs H <= 30 (this model has more)");
    throw_if_stopped(request.stop);
    const double log_z =
        cuda::exact_log_partition(W_.data(), b_.data(), has_a_ ? a_.data() : nullptr, visible_,
                                  hidden_, hidden_type_, stream_.get());
    if (request.states_done != nullptr) {
      request.states_done->fetch_add(exact_hidden_states(hidden_type_, hidden_),
                                     std::memory_order_relaxed);
    }
    throw_if_stopped(request.stop);
    return log_z;
  }

  // All runs at once: per temperature two SGEMMs (x W and h W' for every run) and two fused
  // kernels (host/ais.hpp has the math, kernels/ais.cuh the steps). Throws Stopped when
  // request.stop says so, looked at every kAisTemperaturesPerLook temperatures.
  AisResult ais(const AisRequest& request) override {
    require_params("ais");
    check_ais_request(visible_, request);
    const int d = visible_, H = hidden_;
    const int64_t runs = request.runs;
    // x, hw (runs, d) and xw, h (runs, H) floats, log_w (runs) doubles, c (d) float, a - c (d)
    // double; refused before allocating when more than the free memory less a margin for cuBLAS.
    const size_t bytes =
        static_cast<size_t>(runs) * (2 * (d + H) * sizeof(float) + sizeof(double)) +
        static_cast<size_t>(d) * (sizeof(float) + sizeof(double));
    cuda::require_free_device_memory(bytes, "AIS with " + std::to_string(runs) + " runs needs",
                                     "lower --ais-runs");
    // One cuBLAS operand stays within 2^31 - 1 elements (kernels/minibatch.cu, max_operand_rows).
    if (runs > INT_MAX / std::max(d, H)) {
      throw InputError("AIS: " + std::to_string(runs) + " runs of " +
                       std::to_string(std::max(d, H)) +
                       " units exceed the 2^31 - 1 elements of one cuBLAS operand; lower "
                       "--ais-runs to at most " +
                       std::to_string(INT_MAX / std::max(d, H)));
    }
    DeviceBuffer<float> x(static_cast<size_t>(runs) * d), hw(static_cast<size_t>(runs) * d);
    DeviceBuffer<float> xw(static_cast<size_t>(runs) * H), h(static_cast<size_t>(runs) * H);
    DeviceBuffer<double> log_w(static_cast<size_t>(runs));
    DeviceBuffer<float> c(static_cast<size_t>(d));
    DeviceBuffer<double> a_minus_c(static_cast<size_t>(d));
    std::vector<float> host_a(a_.size());
    a_.download(host_a.data(), host_a.size(), stream_.get());
    std::vector<double> host_a_minus_c(static_cast<size_t>(d));
    bool visible_term = false;
    for (int i = 0; i < d; ++i) {
      const double a = has_a_ ? host_a[i] : 0.0;
      host_a_minus_c[i] = a - static_cast<double>(request.base_bias[i]);
      visible_term |= host_a_minus_c[i] != 0.0;
    }
    const cudaStream_t s = stream_.get();
    c.upload(request.base_bias.data(), request.base_bias.size(), s);
    a_minus_c.upload(host_a_minus_c.data(), host_a_minus_c.size(), s);

    const uint64_t key = philox_key(request.seed, Purpose::ais);
    const uint64_t stream0 = request.first_stream;
    const std::vector<double>& betas = request.betas;
    const int64_t K = static_cast<int64_t>(betas.size()) - 1;
    const float* a = has_a_ ? a_.data() : nullptr;
    cuda::launch_ais_init(c.data(), runs, d, key, stream0, ais_init_phase(), x.data(), log_w.data(),
                          s);
    // The temperatures go to the device in chunks of kAisTemperaturesPerLook, and the host stays
    // at most one chunk ahead: after enqueueing chunk n it waits for chunk n - 1 to end, then
    // looks at request.stop. The device always has chunk n queued while the host waits, so the
    // waits cost it nothing, and a stop request is honoured within about two chunks of device work
    // (the last one synchronized before Stopped leaves) instead of after all K temperatures.
    Event chunk_end[2] = {Event(cudaEventDisableTiming), Event(cudaEventDisableTiming)};
    int64_t chunks_enqueued = 0;
    int64_t steps_reported = 0;  // temperatures whose steps request.steps_done has
    const auto report_steps_through = [&](int64_t k) {
      if (request.steps_done != nullptr) request.steps_done->fetch_add(runs * (k - steps_reported));
      steps_reported = k;
    };
    for (int64_t k = 1; k <= K; ++k) {
      if (k > 1 && (k - 1) % kAisTemperaturesPerLook == 0) {
        chunk_end[chunks_enqueued % 2].record(s);
        if (chunks_enqueued > 0) {
          chunk_end[(chunks_enqueued - 1) % 2].synchronize();
          report_steps_through(k - 1 - kAisTemperaturesPerLook);  // chunk n - 1's last
        }
        ++chunks_enqueued;
        if (stop_requested(request.stop)) {
          stream_.synchronize();  // nothing may still use the buffers freed on the way out
          throw Stopped();
        }
      }
      const bool last = k == K;
      cuda::hidden_preactivation(blas_.get(), W_.data(), d, H, x.data(), runs, xw.data());
      cuda::launch_ais_hidden(xw.data(), b_.data(), x.data(),
                              visible_term ? a_minus_c.data() : nullptr, runs, d, H, hidden_type_,
                              betas[k], betas[k - 1], key, stream0, ais_hidden_phase(k),
                              log_w.data(), last ? nullptr : h.data(), s);
      if (last) break;
      cuda::visible_preactivation(blas_.get(), W_.data(), d, H, h.data(), runs, hw.data());
      cuda::launch_ais_visible(hw.data(), a, c.data(), runs, d, betas[k], key, stream0,
                               ais_visible_phase(k), x.data(), s);
    }
    AisResult result;
    result.log_weights.resize(static_cast<size_t>(runs));
    log_w.download(result.log_weights.data(), result.log_weights.size(), s);
    report_steps_through(K);
    result.log_z_base = ais_log_z_base(request.base_bias, H, hidden_type_);
    return result;
  }

 private:
  void require_params(const char* what) const {
    if (!params_set_) throw std::logic_error(std::string(what) + ": set_params() first");
  }

  // One iteration of single-sample CD-k at the iteration *counter_ (host/backend.hpp's naming),
  // enqueued on stream_ with no synchronization; ends by advancing the counter.
  void enqueue_iteration(const StepConfig& config) {
    const int d = visible_, H = hidden_;
    const cudaStream_t s = stream_.get();
    cublasHandle_t blas = blas_.get();
    const float* a = has_a_ ? a_.data() : nullptr;
    const auto names = [&](uint32_t phase) {
      return cuda::DrawNames{config.key, counter_.data(), 0, phase};
    };
    cuda::launch_pick_image(images_.data(), rows_, d, names(train_index_phase()), x0_.data(),
                            nullptr, s);
    // ph0 = sigm(W'x0 + b), h0 ~ Bern(ph0); ternary: ph0 = G(W'x0 + b), h0 its ternary draw.
    cuda::hidden_preactivation(blas, W_.data(), d, H, x0_.data(), 1, hpre_.data());
    cuda::launch_sigmoid_bernoulli(hpre_.data(), b_.data(), 1, H, names(train_hidden_phase(0)),
                                   ph0_.data(), h_.data(), s, hidden_type_);
    for (int step = 0; step < config.k; ++step) {
      // x_{s+1} ~ Bern(sigm(W h_s + a)); ph_{s+1} = sigm(W'x_{s+1} + b), and h_{s+1} ~
      // Bern(ph_{s+1}) except after the last step, whose probabilities phk enter the update.
      cuda::visible_preactivation(blas, W_.data(), d, H, h_.data(), 1, vpre_.data());
      cuda::launch_sigmoid_bernoulli(vpre_.data(), a, 1, d, names(train_visible_phase(step)),
                                     nullptr, xk_.data(), s);
      cuda::hidden_preactivation(blas, W_.data(), d, H, xk_.data(), 1, hpre_.data());
      const bool last = step + 1 == config.k;
      cuda::launch_sigmoid_bernoulli(hpre_.data(), b_.data(), 1, H,
                                     names(train_hidden_phase(step + 1)), phk_.data(),
                                     last ? nullptr : h_.data(), s, hidden_type_);
    }
    cuda::launch_cd_update(W_.data(), b_.data(), has_a_ ? a_.data() : nullptr, d, H, x0_.data(),
                           ph0_.data(), xk_.data(), phk_.data(), config.lr, s);
    cuda::launch_advance_counter(counter_.data(), s);
  }

  // Captures one enqueue_iteration into graph_.
  void capture_iteration(const StepConfig& config) {
    graph_.reset();
    const cudaStream_t s = stream_.get();
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_iteration(config);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      (void)cudaStreamEndCapture(s, &broken);  // leaves the stream usable
      const cuda::Graph discard(broken);
      (void)cudaGetLastError();
      throw;
    }
    cudaGraph_t raw = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &raw));
    const cuda::Graph graph(raw);
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph.get(), 0));
    graph_.reset(exec);
    graph_config_ = config;
  }

  CudaOptions options_;
  // The fused engine's variant for a d x H model, and why the device cannot run it (empty: it can).
  struct FusedChoice {
    int d = 0, H = 0;
    FusedVariant variant;
    std::string why;
  } fused_choice_;
  // Declared in this order so that the handle goes before its workspace and stream.
  cuda::Stream stream_;
  DeviceBuffer<uint8_t> workspace_{kCublasWorkspaceBytes};
  cuda::CublasHandle blas_;

  DeviceBuffer<uint8_t> images_;  // (rows, d), 0/1
  int64_t rows_ = 0;
  int d_ = 0;

  bool params_set_ = false;
  int visible_ = 0, hidden_ = 0;
  bool has_a_ = false;
  HiddenType hidden_type_ = HiddenType::binary;
  DeviceBuffer<float> W_;  // (d, H), row-major
  DeviceBuffer<float> b_;  // (H)
  DeviceBuffer<float> a_;  // (d), empty without visible bias

  // One iteration's vectors: x0, xk, vpre (d); hpre, ph0, phk, h (H). h is 0/1 (binary) or
  // -1/0/1 (ternary); ph0, phk are the hidden means (sigmoid or G) that the update uses.
  DeviceBuffer<float> x0_, xk_, vpre_, hpre_, ph0_, phk_, h_;
  DeviceBuffer<int64_t> counter_{1};  // the iteration t that names the draws

  cuda::GraphExec graph_;
  StepConfig graph_config_;

  // Minibatch CD / PCD: epoch order, momentum, persistent chains (kernels/minibatch.cuh).
  cuda::MinibatchTrainer minibatch_;
  cuda::ModelView view() {
    cuda::ModelView v;
    v.blas = blas_.get();
    v.stream = stream_.get();
    v.W = W_.data();
    v.b = b_.data();
    v.a = has_a_ ? a_.data() : nullptr;
    v.d = visible_;
    v.H = hidden_;
    v.hidden_type = hidden_type_;
    return v;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(CudaOptions options) {
  const std::string reason = usable_device_or_reason();
  if (!reason.empty()) throw BackendUnavailable(reason);
  return std::make_unique<CudaBackend>(options);
}

}  // namespace rbm
