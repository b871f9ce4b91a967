// Minibatch CD-k / PCD-k and the many-chain sampler on the device (see minibatch.cuh).
#include "kernels/minibatch.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>

#include "host/backend.hpp"
#include "host/errors.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/gibbs_sample.cuh"
#include "kernels/grid_stride.cuh"
#include "kernels/hidden_units.cuh"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm::cuda {
namespace {

// keys[i] = (word << 32) | i, word = word i % 4 of philox_block(key, epoch, 0, i / 4): one thread
// per Philox block of four images (host/minibatch.hpp's shuffle_key).
__global__ void shuffle_keys_kernel(uint64_t key, uint64_t epoch, int64_t rows,
                                    uint64_t* __restrict__ keys) {
  const int64_t blocks = (rows + 3) / 4;
  for (int64_t blk = global_index(); blk < blocks; blk += grid_stride()) {
    const PhiloxBlock r = philox_block(key, epoch, 0, static_cast<uint32_t>(blk));
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * blk + w;
      if (i < rows) keys[i] = (static_cast<uint64_t>(r.word[w]) << 32) | static_cast<uint64_t>(i);
    }
  }
}

// X (n, d) = the images whose indices are the low words of order[0..n) (sorted shuffle keys), or
// index[0..n) when order is null, as 0/1 floats.
__global__ void gather_kernel(const uint8_t* __restrict__ images,
                              const uint64_t* __restrict__ order,
                              const uint32_t* __restrict__ index, int64_t n, int d,
                              float* __restrict__ X) {
  for (int64_t at = global_index(); at < n * d; at += grid_stride()) {
    const int64_t r = at / d, i = at % d;
    const int64_t image = order != nullptr ? static_cast<uint32_t>(order[r]) : index[r];
    X[at] = images[image * d + i] != 0 ? 1.0f : 0.0f;
  }
}

// The fused pass after a GEMM (group_of_units, kernels/hidden_units.cuh), one thread per four
// units of a row of pre (rows, units), one Philox block: unit u of row r draws its uniform from
// (key, stream0 + r, phase, u). prob and sample may be pre itself.
template <HiddenType kType>
__global__ void fused_kernel(float* pre, const float* __restrict__ bias, int64_t rows, int units,
                             uint64_t key, uint64_t stream0, uint32_t phase, float* prob,
                             float scale, float* sample) {
  const int groups = (units + 3) / 4;
  for (int64_t g = global_index(); g < rows * groups; g += grid_stride()) {
    const int64_t row = g / groups;
    const int group = static_cast<int>(g % groups);
    PhiloxBlock r = {{0, 0, 0, 0}};
    if (sample != nullptr) {
      r = philox_block(key, stream0 + static_cast<uint64_t>(row), phase,
                       static_cast<uint32_t>(group));
    }
    group_of_units<kType>(pre, bias, row, units, group, r.word, prob, scale, sample);
  }
}

// v = m v + lr (G - wd W), W += v, elementwise over n.
__global__ void weight_step_kernel(float* __restrict__ W, float* __restrict__ v,
                                   const float* __restrict__ G, int64_t n, float lr, float momentum,
                                   float decay) {
  for (int64_t at = global_index(); at < n; at += grid_stride()) {
    const float vel = momentum * v[at] + lr * (G[at] - decay * W[at]);
    v[at] = vel;
    W[at] += vel;
  }
}

// v = m v + lr g, bias += v, elementwise over the units; g from bias_gradient.
__global__ void bias_step_kernel(float* __restrict__ bias, float* __restrict__ v,
                                 const float* __restrict__ g, int units, float lr, float momentum) {
  for (int64_t j = global_index(); j < units; j += grid_stride()) {
    const float vel = momentum * v[j] + lr * g[j];
    v[j] = vel;
    bias[j] += vel;
  }
}

__global__ void fill_kernel(float* __restrict__ x, int64_t n, float value) {
  for (int64_t at = global_index(); at < n; at += grid_stride()) x[at] = value;
}

// bits (n, ceil(d / 8)): bit i % 8 of byte i / 8 of row r is X[r, i] != 0 (numpy's packbits with
// bitorder "little"), and back.
__global__ void pack_kernel(const float* __restrict__ X, int64_t n, int d,
                            uint8_t* __restrict__ bits) {
  const int row_bytes = (d + 7) / 8;
  for (int64_t at = global_index(); at < n * row_bytes; at += grid_stride()) {
    const int64_t r = at / row_bytes;
    const int first = static_cast<int>(at % row_bytes) * 8;
    unsigned byte = 0;
    for (int k = 0; k < 8 && first + k < d; ++k)
      byte |= (X[r * d + first + k] != 0.0f ? 1u : 0u) << k;
    bits[at] = static_cast<uint8_t>(byte);
  }
}

__global__ void unpack_kernel(const uint8_t* __restrict__ bits, int64_t n, int d,
                              float* __restrict__ X) {
  const int row_bytes = (d + 7) / 8;
  for (int64_t at = global_index(); at < n * d; at += grid_stride()) {
    const int64_t r = at / d;
    const int i = static_cast<int>(at % d);
    X[at] = (bits[r * row_bytes + i / 8] >> (i % 8)) & 1u ? 1.0f : 0.0f;
  }
}

// type: the units' (v.hidden_type for hidden units, HiddenType::binary for visible ones).
void launch_fused(HiddenType type, float* pre, const float* bias, int64_t rows, int units,
                  uint64_t key, uint64_t stream0, uint32_t phase, float* prob, float scale,
                  float* sample, cudaStream_t stream) {
  if (rows <= 0 || units <= 0) return;
  with_hidden_type(type, [&](auto tag) {
    fused_kernel<decltype(tag)::value><<<grid_for(rows * ((units + 3) / 4)), kThreads, 0, stream>>>(
        pre, bias, rows, units, key, stream0, phase, prob, scale, sample);
  });
  CUDA_CHECK_LAUNCH("fused_kernel");
}

void launch_gather(const uint8_t* images, const uint64_t* order, const uint32_t* index, int64_t n,
                   int d, float* X, cudaStream_t stream) {
  if (n <= 0) return;
  gather_kernel<<<grid_for(n * d), kThreads, 0, stream>>>(images, order, index, n, d, X);
  CUDA_CHECK_LAUNCH("gather_kernel");
}

// Sorted shuffle keys of epoch e into sorted (rows); keys and temp are resized as needed.
void sort_epoch_keys(uint32_t seed, int64_t epoch, int64_t rows, DeviceBuffer<uint64_t>& keys,
                     DeviceBuffer<uint64_t>& sorted, DeviceBuffer<uint8_t>& temp,
                     cudaStream_t stream) {
  if (rows <= 0 || rows > INT_MAX) throw std::invalid_argument("epoch permutation: bad row count");
  // Buffers are reallocated (rows changed: the data were staged again) only after the stream's
  // earlier work, which may still read them, is done.
  if (keys.size() != static_cast<size_t>(rows) || sorted.size() != static_cast<size_t>(rows)) {
    CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  keys.resize(static_cast<size_t>(rows));
  sorted.resize(static_cast<size_t>(rows));
  shuffle_keys_kernel<<<grid_for((rows + 3) / 4), kThreads, 0, stream>>>(
      philox_key(seed, Purpose::shuffle), static_cast<uint64_t>(epoch), rows, keys.data());
  CUDA_CHECK_LAUNCH("shuffle_keys_kernel");
  size_t temp_bytes = 0;
  const int n = static_cast<int>(rows);
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, temp_bytes, keys.data(), sorted.data(), n, 0,
                                            64, stream));
  if (temp.size() < temp_bytes) {
    CUDA_CHECK(cudaStreamSynchronize(stream));
    temp.resize(temp_bytes);
  }
  CUDA_CHECK(cub::DeviceRadixSort::SortKeys(temp.data(), temp_bytes, keys.data(), sorted.data(), n,
                                            0, 64, stream));
}

// TF32 tensor-core math on a cuBLAS handle while in scope (when asked), its own mode after.
class MathMode {
 public:
  MathMode(cublasHandle_t blas, bool tf32) : blas_(blas), set_(tf32) {
    if (!set_) return;
    CUBLAS_CHECK(cublasGetMathMode(blas_, &previous_));
    CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_TF32_TENSOR_OP_MATH));
  }
  ~MathMode() {
    if (set_) (void)cublasSetMathMode(blas_, previous_);
  }
  MathMode(const MathMode&) = delete;
  MathMode& operator=(const MathMode&) = delete;

 private:
  cublasHandle_t blas_;
  bool set_;
  cublasMath_t previous_ = CUBLAS_DEFAULT_MATH;
};

// Device bytes of MinibatchTrainer::train's buffers: the velocities and the gradient (2 d H +
// H + d), X0 (B, d), Q0 (B, H), Qk and Hs (N, H), the negative phase's states: PCD's chains
// (N, d) and their start images (N), or CD's Xk (B, d), and the bias steps' ones (max(B, N)) and
// gradient (max(d, H)).
size_t minibatch_bytes(int64_t B, int64_t N, int d, int H, bool pcd) {
  const size_t b = static_cast<size_t>(B), n = static_cast<size_t>(N);
  const size_t D = static_cast<size_t>(d), h = static_cast<size_t>(H);
  const size_t floats = 2 * D * h + h + D + b * (D + h) + 2 * n * h + (pcd ? n * D : b * D) +
                        std::max(b, n) + std::max(D, h);
  return floats * sizeof(float) + (pcd ? n * sizeof(uint32_t) : 0);
}

// The most rows of `width` floats one cuBLAS operand may hold: the legacy API's dimensions are int,
// and whether every kernel behind it computes element offsets in 64 bits is not documented, so
// an operand stays within 2^31 - 1 elements (2.7 million chains at d = 784).
int64_t max_operand_rows(int width) { return INT_MAX / std::max(width, 1); }

void check_rows(int64_t rows, int width, const char* what) {
  if (rows > max_operand_rows(width)) {
    throw InputError(std::string(what) + ": " + std::to_string(rows) + " rows of " +
                     std::to_string(width) + " units exceed the 2^31 - 1 elements of one cuBLAS " +
                     "operand (at most " + std::to_string(max_operand_rows(width)) + " rows)");
  }
}

}  // namespace

size_t sampler_bytes(int64_t chains, int d, int H, bool packed) {
  const size_t n = static_cast<size_t>(chains);
  return n * static_cast<size_t>(d + H) * sizeof(float) +
         n * static_cast<size_t>(packed ? (d + 7) / 8 : d);
}

void sample_steps(const ModelView& v, uint64_t key, float* X, float* Hs, int64_t n,
                  int64_t first_chain, int64_t first_step, int64_t steps) {
  check_rows(n, std::max(v.d, v.H), "sample");
  const uint64_t stream0 = static_cast<uint64_t>(first_chain);
  for (int64_t g = first_step; g < first_step + steps; ++g) {
    hidden_preactivation(v.blas, v.W, v.d, v.H, X, n, Hs);
    launch_fused(v.hidden_type, Hs, v.b, n, v.H, key, stream0, sample_hidden_phase(g), nullptr,
                 1.0f, Hs, v.stream);
    visible_preactivation(v.blas, v.W, v.d, v.H, Hs, n, X);
    launch_fused(HiddenType::binary, X, v.a, n, v.d, key, stream0, sample_visible_phase(g), nullptr,
                 1.0f, X, v.stream);
  }
}

void gibbs_host_states(const ModelView& v, std::span<uint8_t> states, int64_t n_chains,
                       uint64_t key, int64_t first_step, int64_t steps, int64_t first_chain,
                       const SamplerOptions& options) {
  const int d = v.d;
  if (n_chains < 0 || first_step < 0 || steps < 0 || first_chain < 0) {
    throw std::invalid_argument("gibbs: bad chain or step count");
  }
  if (static_cast<int64_t>(states.size()) != n_chains * d) {
    throw std::invalid_argument("gibbs: states must be (n_chains, d)");
  }
  if (n_chains == 0 || steps == 0) return;
  // All chains at once by default, in as few batches as cuBLAS's operand size allows.
  const int64_t batch =
      std::min(n_chains, options.batch_chains > 0 ? options.batch_chains
                                                  : max_operand_rows(std::max(d, v.H)));
  // Memory first: its message says what the request needs.
  const size_t bytes = sampler_bytes(batch, d, v.H, options.packed);
  require_free_device_memory(bytes,
                             "sample: " + std::to_string(batch) +
                                 " chains at once ((d + H) floats and the state per chain) need",
                             "use fewer chains");
  check_rows(batch, std::max(d, v.H), "sample");
  const int row_bytes = options.packed ? (d + 7) / 8 : d;
  DeviceBuffer<float> X(static_cast<size_t>(batch) * d), Hs(static_cast<size_t>(batch) * v.H);
  DeviceBuffer<uint8_t> transfer(static_cast<size_t>(batch) * row_bytes);
  std::vector<uint8_t> packed_host(options.packed ? static_cast<size_t>(batch) * row_bytes : 0);
  const MathMode math(v.blas, options.tf32);
  const cudaStream_t s = v.stream;
  for (int64_t first = 0; first < n_chains; first += batch) {
    const int64_t n = std::min(batch, n_chains - first);
    uint8_t* host = states.data() + first * d;
    if (options.packed) {
      std::fill(packed_host.begin(), packed_host.end(), uint8_t{0});
      for (int64_t r = 0; r < n; ++r) {
        for (int i = 0; i < d; ++i) {
          packed_host[r * row_bytes + i / 8] |=
              static_cast<uint8_t>((host[r * d + i] != 0) << (i % 8));
        }
      }
      transfer.upload(packed_host.data(), static_cast<size_t>(n) * row_bytes, s);
      unpack_kernel<<<grid_for(n * d), kThreads, 0, s>>>(transfer.data(), n, d, X.data());
      CUDA_CHECK_LAUNCH("unpack_kernel");
    } else {
      transfer.upload(host, static_cast<size_t>(n) * d, s);
      launch_bytes_to_floats(transfer.data(), n * d, X.data(), s);
    }
    sample_steps(v, key, X.data(), Hs.data(), n, first_chain + first, first_step, steps);
    if (options.packed) {
      pack_kernel<<<grid_for(n * row_bytes), kThreads, 0, s>>>(X.data(), n, d, transfer.data());
      CUDA_CHECK_LAUNCH("pack_kernel");
      transfer.download(packed_host.data(), static_cast<size_t>(n) * row_bytes, s);
      for (int64_t r = 0; r < n; ++r) {
        for (int i = 0; i < d; ++i)
          host[r * d + i] = (packed_host[r * row_bytes + i / 8] >> (i % 8)) & 1;
      }
    } else {
      launch_floats_to_bytes(X.data(), n * d, transfer.data(), s);
      transfer.download(host, static_cast<size_t>(n) * d, s);
    }
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
}

std::vector<uint32_t> device_epoch_permutation(uint32_t seed, int64_t epoch, int64_t rows,
                                               cudaStream_t stream) {
  DeviceBuffer<uint64_t> keys, sorted;
  DeviceBuffer<uint8_t> temp;
  sort_epoch_keys(seed, epoch, rows, keys, sorted, temp, stream);
  std::vector<uint64_t> host(static_cast<size_t>(rows));
  sorted.download(host.data(), host.size(), stream);
  std::vector<uint32_t> permutation(host.size());
  for (size_t p = 0; p < host.size(); ++p) permutation[p] = static_cast<uint32_t>(host[p]);
  return permutation;
}

// --- minibatch training ---------------------------------------------------------------------

void MinibatchTrainer::stage(const uint8_t* images, int64_t rows, int d) {
  images_ = images;
  rows_ = rows;
  d_ = d;
  perm_epoch_ = -1;
  clear_state();
}

void MinibatchTrainer::clear_state() {
  has_velocity_ = false;
  n_chains_ = 0;
}

void MinibatchTrainer::order_for(const ModelView& v, uint32_t seed, int64_t epoch) {
  if (epoch == perm_epoch_ && seed == perm_seed_) return;
  sort_epoch_keys(seed, epoch, rows_, keys_, sorted_, sort_temp_, v.stream);
  perm_epoch_ = epoch;
  perm_seed_ = seed;
}

void MinibatchTrainer::train(const ModelView& v, const Recipe& recipe, int64_t first,
                             int64_t count) {
  if (rows_ == 0) throw std::logic_error("train_minibatch: stage() the training images first");
  if (v.d != d_) throw std::logic_error("train_minibatch: model and data disagree on d");
  check_minibatch_recipe(recipe, rows_);
  if (first < 0 || count < 0) throw std::invalid_argument("train_minibatch: bad updates");
  if (count == 0) return;
  const int64_t B = recipe.batch, N = negative_samples(recipe);
  const int d = v.d, H = v.H, k = recipe.k;
  if (recipe.pcd && n_chains_ != 0 && n_chains_ != N) {
    throw InputError("train_minibatch: the backend holds " + std::to_string(n_chains_) +
                     " PCD chains, the recipe asks for " + std::to_string(N));
  }
  // Refused before allocating, with what it needs: the allocations below grow the buffers
  // already held to this recipe's sizes.
  const size_t need = minibatch_bytes(B, N, d, H, recipe.pcd);
  const size_t held = vW_.bytes() + vb_.bytes() + va_.bytes() + G_.bytes() + X0_.bytes() +
                      Q0_.bytes() + Qk_.bytes() + Hs_.bytes() + Xk_.bytes() + chains_.bytes() +
                      chain_images_.bytes() + ones_.bytes() + bias_grad_.bytes();
  if (need > held) {
    require_free_device_memory(need - held,
                               "train_minibatch: a batch of " + std::to_string(B) + " and " +
                                   std::to_string(N) + " negative chains need" +
                                   (held > 0 ? " (beyond the buffers held)" : ""),
                               "use a smaller --batch or --chains");
  }
  check_rows(std::max(B, N), std::max(d, H), "train_minibatch");  // after memory's clearer message
  const cudaStream_t s = v.stream;
  const size_t dH = static_cast<size_t>(d) * H;
  if (!has_velocity_) {
    vW_.resize(dH);
    vb_.resize(static_cast<size_t>(H));
    va_.resize(v.a != nullptr ? static_cast<size_t>(d) : 0);
    CUDA_CHECK(cudaMemsetAsync(vW_.data(), 0, vW_.bytes(), s));
    CUDA_CHECK(cudaMemsetAsync(vb_.data(), 0, vb_.bytes(), s));
    if (!va_.empty()) CUDA_CHECK(cudaMemsetAsync(va_.data(), 0, va_.bytes(), s));
    has_velocity_ = true;
  }
  if (recipe.pcd && n_chains_ == 0) {
    std::vector<uint32_t> images(static_cast<size_t>(N));
    for (int64_t c = 0; c < N; ++c) images[c] = initial_chain_image(recipe.seed, c, rows_);
    chain_images_.resize(images.size());
    chain_images_.upload(images.data(), images.size(), s);
    chains_.resize(static_cast<size_t>(N) * d);
    launch_gather(images_, nullptr, chain_images_.data(), N, d, chains_.data(), s);
    n_chains_ = N;
    CUDA_CHECK(cudaStreamSynchronize(s));  // images is freed on return
  }
  X0_.resize(static_cast<size_t>(B) * d);
  Q0_.resize(static_cast<size_t>(B) * H);
  Qk_.resize(static_cast<size_t>(N) * H);
  Hs_.resize(static_cast<size_t>(N) * H);
  G_.resize(dH);
  if (!recipe.pcd) Xk_.resize(static_cast<size_t>(B) * d);
  if (const size_t rows = static_cast<size_t>(std::max(B, N)); ones_.size() != rows) {
    ones_.resize(rows);
    fill_kernel<<<grid_for(static_cast<int64_t>(rows)), kThreads, 0, s>>>(
        ones_.data(), static_cast<int64_t>(rows), 1.0f);
    CUDA_CHECK_LAUNCH("fill_kernel");
  }
  bias_grad_.resize(static_cast<size_t>(std::max(d, H)));
  float* Xneg = recipe.pcd ? chains_.data() : Xk_.data();
  const uint64_t key = philox_key(recipe.seed, Purpose::train);
  const int64_t per_epoch = batches_per_epoch(recipe, rows_);
  const int64_t total = total_updates(recipe, rows_);
  const float inv_b = 1.0f / static_cast<float>(B), minus_inv_n = -1.0f / static_cast<float>(N);
  const float one = 1.0f, zero = 0.0f;

  for (int64_t u = first; u < first + count; ++u) {
    order_for(v, recipe.seed, u / per_epoch);
    launch_gather(images_, sorted_.data() + (u % per_epoch) * B, nullptr, B, d, X0_.data(), s);
    // Positive phase: Q0 = sigm(X0 W + b) / B (G(X0 W + b) / B for ternary hidden units).
    hidden_preactivation(v.blas, v.W, d, H, X0_.data(), B, Q0_.data());
    if (recipe.pcd) {
      launch_fused(v.hidden_type, Q0_.data(), v.b, B, H, key, 0, 0, Q0_.data(), inv_b, nullptr, s);
      // The sampler's k steps on the chains, global steps u k ...; then Qk = -sigm(V W + b) / N
      // (-G(V W + b) / N ternary).
      sample_steps(v, key, chains_.data(), Hs_.data(), N, 0, u * k, k);
      hidden_preactivation(v.blas, v.W, d, H, chains_.data(), N, Qk_.data());
      launch_fused(v.hidden_type, Qk_.data(), v.b, N, H, key, 0, 0, Qk_.data(), minus_inv_n,
                   nullptr, s);
    } else {
      // CD-k: row r's chain from X0[r], streams u B + r, the single-sample phases.
      const uint64_t stream0 = static_cast<uint64_t>(u * B);
      launch_fused(v.hidden_type, Q0_.data(), v.b, B, H, key, stream0, train_hidden_phase(0),
                   Q0_.data(), inv_b, Hs_.data(), s);
      for (int step = 0; step < k; ++step) {
        visible_preactivation(v.blas, v.W, d, H, Hs_.data(), B, Xk_.data());
        launch_fused(HiddenType::binary, Xk_.data(), v.a, B, d, key, stream0,
                     train_visible_phase(step), nullptr, 1.0f, Xk_.data(), s);
        hidden_preactivation(v.blas, v.W, d, H, Xk_.data(), B, Qk_.data());
        const bool last = step + 1 == k;
        launch_fused(v.hidden_type, Qk_.data(), v.b, B, H, key, stream0,
                     train_hidden_phase(step + 1), last ? Qk_.data() : nullptr, minus_inv_n,
                     last ? nullptr : Hs_.data(), s);
      }
    }
    // G (d, H) row-major = G' (H, d) column-major = Q0' X0 + Qk' Xneg:
    // Q0 (B, H) row-major is (H, B) column-major; X0 (B, d) row-major is (d, B) column-major, op T.
    CUBLAS_CHECK(cublasSgemm(v.blas, CUBLAS_OP_N, CUBLAS_OP_T, H, d, static_cast<int>(B), &one,
                             Q0_.data(), H, X0_.data(), d, &zero, G_.data(), H));
    CUBLAS_CHECK(cublasSgemm(v.blas, CUBLAS_OP_N, CUBLAS_OP_T, H, d, static_cast<int>(N), &one,
                             Qk_.data(), H, Xneg, d, &one, G_.data(), H));
    const float lr = learning_rate_at(recipe, u, total);
    weight_step_kernel<<<grid_for(static_cast<int64_t>(dH)), kThreads, 0, s>>>(
        v.W, vW_.data(), G_.data(), static_cast<int64_t>(dH), lr, recipe.momentum,
        recipe.weight_decay);
    CUDA_CHECK_LAUNCH("weight_step_kernel");
    bias_step(v, v.b, vb_.data(), Q0_.data(), B, Qk_.data(), N, H, 1.0f, 1.0f, lr, recipe.momentum);
    if (v.a != nullptr) {
      bias_step(v, v.a, va_.data(), X0_.data(), B, Xneg, N, d, inv_b, minus_inv_n, lr,
                recipe.momentum);
    }
  }
}

// g = pos_scale pos' 1 + neg_scale neg' 1 (units): pos (n_pos, units) row-major is (units, n_pos)
// column-major, and a GEMV with ones sums its rows across the whole device (one thread per unit
// summing N rows used a few of its SMs: for a million PCD chains, Qk and the chains are 3.5 GB,
// read at a few percent of the bandwidth). Then v = m v + lr g; bias += v.
void MinibatchTrainer::bias_step(const ModelView& v, float* bias, float* velocity, const float* pos,
                                 int64_t n_pos, const float* neg, int64_t n_neg, int units,
                                 float pos_scale, float neg_scale, float lr, float momentum) {
  const float zero = 0.0f, one = 1.0f;
  CUBLAS_CHECK(cublasSgemv(v.blas, CUBLAS_OP_N, units, static_cast<int>(n_pos), &pos_scale, pos,
                           units, ones_.data(), 1, &zero, bias_grad_.data(), 1));
  CUBLAS_CHECK(cublasSgemv(v.blas, CUBLAS_OP_N, units, static_cast<int>(n_neg), &neg_scale, neg,
                           units, ones_.data(), 1, &one, bias_grad_.data(), 1));
  bias_step_kernel<<<grid_for(units), kThreads, 0, v.stream>>>(bias, velocity, bias_grad_.data(),
                                                               units, lr, momentum);
  CUDA_CHECK_LAUNCH("bias_step_kernel");
}

TrainingState MinibatchTrainer::state(const ModelView& v) {
  TrainingState state;
  const cudaStream_t s = v.stream;
  if (has_velocity_) {
    state.vW.resize(vW_.size());
    state.vb.resize(vb_.size());
    state.va.resize(va_.size());
    vW_.download(state.vW.data(), state.vW.size(), s);
    vb_.download(state.vb.data(), state.vb.size(), s);
    va_.download(state.va.data(), state.va.size(), s);
  }
  state.n_chains = n_chains_;
  if (n_chains_ > 0) {
    const size_t n = chains_.size();  // (n_chains, d): d of the state set, before any stage()
    DeviceBuffer<uint8_t> bytes(n);
    launch_floats_to_bytes(chains_.data(), static_cast<int64_t>(n), bytes.data(), s);
    state.chains.resize(n);
    bytes.download(state.chains.data(), n, s);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  return state;
}

void MinibatchTrainer::set_state(const ModelView& v, const TrainingState& state) {
  const size_t d = static_cast<size_t>(v.d), H = static_cast<size_t>(v.H);
  const auto fits = [](const std::vector<float>& x, size_t n) {
    return x.empty() || x.size() == n;
  };
  if (!fits(state.vW, d * H) || !fits(state.vb, H) || !fits(state.va, v.a != nullptr ? d : 0)) {
    throw InputError("training state: the momentum velocities do not fit the model");
  }
  if (state.n_chains < 0 || state.chains.size() != static_cast<size_t>(state.n_chains) * d) {
    throw InputError("training state: the chains are not (n_chains, d)");
  }
  const cudaStream_t s = v.stream;
  has_velocity_ = !state.vW.empty() || !state.vb.empty() || !state.va.empty();
  if (has_velocity_) {
    const auto put = [&](DeviceBuffer<float>& buffer, const std::vector<float>& host, size_t n) {
      buffer.resize(n);
      if (n == 0) return;
      if (host.empty()) {
        CUDA_CHECK(cudaMemsetAsync(buffer.data(), 0, buffer.bytes(), s));
      } else {
        buffer.upload(host.data(), n, s);
      }
    };
    put(vW_, state.vW, d * H);
    put(vb_, state.vb, H);
    put(va_, state.va, v.a != nullptr ? d : 0);
  }
  n_chains_ = state.n_chains;
  // The chains' bytes, converted on the stream: freed after the synchronization below, not while
  // the conversion may still read them.
  DeviceBuffer<uint8_t> bytes;
  if (n_chains_ > 0) {
    const size_t n = state.chains.size();
    bytes.resize(n);
    bytes.upload(state.chains.data(), n, s);
    chains_.resize(n);
    launch_bytes_to_floats(bytes.data(), static_cast<int64_t>(n), chains_.data(), s);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace rbm::cuda
