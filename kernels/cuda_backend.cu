// The CUDA backend (design.md, "Data flow"): the binarized images resident on the device, cuBLAS
// GEMVs for W'x and W h, the fused sigmoid + Bernoulli kernel, the image index drawn on the
// device, the CD-k update in place. The iteration that names the draws lives in device memory, so
// one training iteration is captured in a CUDA graph and replayed with no host round trip.
#include "kernels/cuda_backend.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/model.hpp"
#include "kernels/cd_update.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"
#include "kernels/gibbs_sample.cuh"
#include "kernels/philox.h"

namespace rbm {
namespace {

using cuda::DeviceBuffer;

// A user-owned cuBLAS workspace (NVIDIA's recommended size for Hopper), so that cuBLAS allocates
// nothing while a graph is being captured.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;
// gibbs() runs its chains in batches whose (chains, max(d, H)) float buffers stay under 64 MiB.
constexpr int64_t kGibbsBufferElements = int64_t{1} << 24;

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
  std::string device_description() const override { return cuda_device_description(); }

  void stage(const Dataset& train) override {
    if (train.rows <= 0) throw std::invalid_argument("stage: no training images");
    if (train.rows > int64_t{UINT32_MAX}) throw std::invalid_argument("stage: too many images");
    const size_t n = static_cast<size_t>(train.rows) * static_cast<size_t>(train.cols());
    if (train.pixels.size() != n) throw std::invalid_argument("stage: pixels are not (rows, d)");
    images_.resize(n);
    images_.upload(train.pixels.data(), n, stream_.get());
    stream_.synchronize();
    rows_ = train.rows;
    d_ = train.cols();
    graph_.reset();  // it baked in the image pointer and the row count
  }

  void set_params(const Params& params) override {
    check_shapes(params);
    const int d = params.visible, H = params.hidden;
    const bool has_a = params.has_visible_bias();
    if (!params_set_ || d != visible_ || H != hidden_ || has_a != has_a_) {
      visible_ = d;
      hidden_ = H;
      has_a_ = has_a;
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
      graph_.reset();  // it baked in the buffers and shapes
    }
    const cudaStream_t s = stream_.get();
    W_.upload(params.W.data(), params.W.size(), s);
    b_.upload(params.b.data(), params.b.size(), s);
    a_.upload(params.a.data(), params.a.size(), s);
    stream_.synchronize();
    params_set_ = true;
  }

  Params get_params() override {
    require_params("get_params");
    Params params;
    params.visible = visible_;
    params.hidden = hidden_;
    params.W.resize(W_.size());
    params.b.resize(b_.size());
    params.a.resize(a_.size());
    const cudaStream_t s = stream_.get();
    W_.download(params.W.data(), params.W.size(), s);
    b_.download(params.b.data(), params.b.size(), s);
    a_.download(params.a.data(), params.a.size(), s);
    stream_.synchronize();
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
    cuda::launch_set_counter(counter_.data(), first_iteration, s);
    int64_t done = 0;
    if (options_.use_graph) {
      if (!graph_ || !(graph_config_ == config)) {
        // Warm-up: a real iteration (t = first_iteration) that also loads every kernel and lets
        // cuBLAS pick its own before the capture.
        enqueue_iteration(config);
        ++done;
        capture_iteration(config);
      }
      for (; done < count; ++done) CUDA_CHECK(cudaGraphLaunch(graph_.get(), s));
    } else {
      for (; done < count; ++done) enqueue_iteration(config);
    }
    stream_.synchronize();
  }

  void gibbs(std::vector<uint8_t>& states, int64_t n_chains, uint32_t seed, int64_t first_step,
             int64_t steps) override {
    require_params("gibbs");
    const int d = visible_, H = hidden_;
    if (n_chains < 0 || steps < 0) throw std::invalid_argument("gibbs: bad chain or step count");
    if (static_cast<int64_t>(states.size()) != n_chains * d) {
      throw std::invalid_argument("gibbs: states must be (n_chains, d)");
    }
    if (n_chains == 0 || steps == 0) return;
    const int64_t fit = std::max<int64_t>(1, kGibbsBufferElements / std::max(d, H));
    const int64_t batch =
        std::min(n_chains, options_.gibbs_batch_chains > 0 ? options_.gibbs_batch_chains : fit);
    DeviceBuffer<uint8_t> bits(static_cast<size_t>(batch * d));  // (batch, d)
    DeviceBuffer<float> x(static_cast<size_t>(batch * d));       // (batch, d) 0/1
    DeviceBuffer<float> x_pre(static_cast<size_t>(batch * d));   // (batch, d)
    DeviceBuffer<float> h_pre(static_cast<size_t>(batch * H));   // (batch, H)
    DeviceBuffer<float> h(static_cast<size_t>(batch * H));       // (batch, H) 0/1
    const uint64_t key = philox_key(seed, Purpose::sample);
    const float* a = has_a_ ? a_.data() : nullptr;
    const cudaStream_t s = stream_.get();
    for (int64_t first_chain = 0; first_chain < n_chains; first_chain += batch) {
      const int64_t chains = std::min(batch, n_chains - first_chain);
      uint8_t* host = states.data() + first_chain * d;
      bits.upload(host, static_cast<size_t>(chains * d), s);
      cuda::launch_bytes_to_floats(bits.data(), chains * d, x.data(), s);
      for (int64_t step = first_step; step < first_step + steps; ++step) {
        // Chain c draws from stream c: row r of this batch is chain first_chain + r.
        const cuda::DrawNames hidden_names{key, nullptr, first_chain, sample_hidden_phase(step)};
        const cuda::DrawNames visible_names{key, nullptr, first_chain, sample_visible_phase(step)};
        cuda::hidden_preactivation(blas_.get(), W_.data(), d, H, x.data(), chains, h_pre.data());
        cuda::launch_sigmoid_bernoulli(h_pre.data(), b_.data(), chains, H, hidden_names, nullptr,
                                       h.data(), s);
        cuda::visible_preactivation(blas_.get(), W_.data(), d, H, h.data(), chains, x_pre.data());
        cuda::launch_sigmoid_bernoulli(x_pre.data(), a, chains, d, visible_names, nullptr, x.data(),
                                       s);
      }
      cuda::launch_floats_to_bytes(x.data(), chains * d, bits.data(), s);
      bits.download(host, static_cast<size_t>(chains * d), s);
    }
    stream_.synchronize();
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
    // ph0 = sigm(W'x0 + b), h0 ~ Bern(ph0).
    cuda::hidden_preactivation(blas, W_.data(), d, H, x0_.data(), 1, hpre_.data());
    cuda::launch_sigmoid_bernoulli(hpre_.data(), b_.data(), 1, H, names(train_hidden_phase(0)),
                                   ph0_.data(), h_.data(), s);
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
                                     last ? nullptr : h_.data(), s);
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
  DeviceBuffer<float> W_;  // (d, H), row-major
  DeviceBuffer<float> b_;  // (H)
  DeviceBuffer<float> a_;  // (d), empty without visible bias

  // One iteration's vectors: x0, xk, vpre (d); hpre, ph0, phk, h (H).
  DeviceBuffer<float> x0_, xk_, vpre_, hpre_, ph0_, phk_, h_;
  DeviceBuffer<int64_t> counter_{1};  // the iteration t that names the draws

  cuda::GraphExec graph_;
  StepConfig graph_config_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(CudaOptions options) {
  const std::string reason = usable_device_or_reason();
  if (!reason.empty()) throw BackendUnavailable(reason);
  return std::make_unique<CudaBackend>(options);
}

}  // namespace rbm
