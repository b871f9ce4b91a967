// Each CUDA kernel against its CPU reference: cuRAND's device Philox against rbm::philox_block,
// the fused sigmoid + Bernoulli kernel against rbm::cpu::sigmoid_bernoulli, the image pick, the
// cuBLAS pre-activations against rbm::cpu::*_preactivation, the CD update against double.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "host/backend.hpp"
#include "host/cpu_kernels.hpp"
#include "host/model.hpp"
#include "kernels/cd_update.cuh"
#include "kernels/cuda_check.cuh"
#include "kernels/device_memory.cuh"
#include "kernels/gibbs_sample.cuh"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"
#include "tests/cuda/cuda_test_util.hpp"

namespace rbm {
namespace {

using cuda::DeviceBuffer;

template <typename T>
DeviceBuffer<T> to_device(const std::vector<T>& host, cudaStream_t stream) {
  DeviceBuffer<T> buffer(host.size());
  buffer.upload(host.data(), host.size(), stream);
  return buffer;
}

template <typename T>
std::vector<T> to_host(const DeviceBuffer<T>& buffer, cudaStream_t stream) {
  std::vector<T> host(buffer.size());
  buffer.download(host.data(), host.size(), stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

// Fills a float buffer with NaN (all bits set), so that an element the kernel forgot shows.
template <typename T>
void poison(DeviceBuffer<T>& buffer, cudaStream_t stream) {
  CUDA_CHECK(cudaMemsetAsync(buffer.data(), 0xFF, buffer.bytes(), stream));
}

std::vector<float> normal_floats(size_t n, float std_dev, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, std_dev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<float> bits_as_floats(size_t n, double p_one, std::mt19937_64& rng) {
  std::bernoulli_distribution bit(p_one);
  std::vector<float> v(n);
  for (float& x : v) x = bit(rng) ? 1.0f : 0.0f;
  return v;
}

// The checks need no device: a failing status throws with the library's name for it, the
// statement and the line.
TEST(CudaCheck, NamesTheErrorTheStatementAndTheLine) {
  const auto message_of = [](const auto& statement) -> std::string {
    try {
      statement();
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  const int line = __LINE__ + 1;
  const std::string cuda = message_of([] { CUDA_CHECK(cudaErrorInvalidValue); });
  EXPECT_NE(cuda.find("cudaErrorInvalidValue"), std::string::npos) << cuda;
  EXPECT_NE(cuda.find("test_cuda_kernels.cu:" + std::to_string(line)), std::string::npos) << cuda;
  const std::string blas = message_of([] { CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED); });
  EXPECT_NE(blas.find("cuBLAS error CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos) << blas;
  const std::string rand = message_of([] { CURAND_CHECK(CURAND_STATUS_LAUNCH_FAILURE); });
  EXPECT_NE(rand.find("cuRAND error CURAND_STATUS_LAUNCH_FAILURE"), std::string::npos) << rand;
  EXPECT_EQ(message_of([] { CUDA_CHECK(cudaSuccess); }), "");
}

TEST(CudaKernels, DevicePhiloxWordsEqualCpuPhilox) {
  RBM_REQUIRE_CUDA_DEVICE();
  std::vector<cuda::DrawBlock> blocks;
  // Edge values of every field: the counter's carries, stream halves, and phases >= 2^29 and
  // >= 2^30, where curand_init's offset 4 ((phase << 32) | block) no longer fits in 64 bits.
  const uint64_t keys[] = {0,
                           1,
                           philox_key(1, Purpose::train),
                           philox_key(0xFFFFFFFFu, Purpose::sample),
                           0x0123456789ABCDEFull,
                           ~0ull};
  const uint64_t streams[] = {0,    1, 24999, 0xFFFFFFFFull, 0x100000000ull, 0x8000000000000005ull,
                              ~0ull};
  const uint32_t phases[] = {
      0, 1, 2, 7, (1u << 29) - 1, 1u << 29, (1u << 30) - 1, 1u << 30, 0x80000003u, kInitPhase};
  const uint32_t block_ids[] = {0, 1, 195, 0x80000000u, 0xFFFFFFFFu};
  for (const uint64_t key : keys) {
    for (const uint64_t stream : streams) {
      for (const uint32_t phase : phases) {
        for (const uint32_t block : block_ids) blocks.push_back({key, stream, phase, block});
      }
    }
  }
  std::mt19937_64 rng(2024);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t r = rng();
    // Mostly small phases and blocks (the ones training uses), some anywhere.
    const bool small = i % 4 != 0;
    blocks.push_back(
        {rng(), small ? rng() % 1000000 : rng(),
         small ? static_cast<uint32_t>(r % 16) : static_cast<uint32_t>(r),
         small ? static_cast<uint32_t>((r >> 32) % 256) : static_cast<uint32_t>(r >> 32)});
  }

  const cuda::Stream stream;
  const DeviceBuffer<cuda::DrawBlock> d_blocks = to_device(blocks, stream.get());
  DeviceBuffer<uint32_t> d_words(4 * blocks.size());
  poison(d_words, stream.get());
  cuda::launch_philox_words(d_blocks.data(), static_cast<int64_t>(blocks.size()), d_words.data(),
                            stream.get());
  const std::vector<uint32_t> words = to_host(d_words, stream.get());

  int mismatches = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const cuda::DrawBlock& b = blocks[i];
    const PhiloxBlock expected = philox_block(b.key, b.stream, b.phase, b.block);
    for (int w = 0; w < 4; ++w) {
      if (words[4 * i + w] != expected.word[w] && ++mismatches <= 10) {
        ADD_FAILURE() << "key " << b.key << " stream " << b.stream << " phase " << b.phase
                      << " block " << b.block << " word " << w << ": device " << words[4 * i + w]
                      << ", CPU " << expected.word[w];
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << 4 * blocks.size() << " words";
}

// The fused kernel computes rbm::sigmoid, the same formula as the CPU; the only difference is
// where each compiler contracts a * b + c into a fused multiply-add (exp_nonpositive's range
// reduction and polynomial): nvcc does so freely, g++ with -march=x86-64-v3 where it sees fit, and
// not at all in code built without FMA. Each contraction moves a result by at most an ulp or so,
// a few ulp in all: we allow 8 ulp of float, 8 FLT_EPSILON relative (plus FLT_MIN, for results
// that leave the normal floats).
constexpr float kSigmoidRelTol = 8 * FLT_EPSILON;

TEST(CudaKernels, FusedSigmoidBernoulliMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  const int units = 1001;  // not a multiple of 4: the last thread of a row has one unit
  const int64_t rows = 5;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> spread(-12.0f, 12.0f);
  std::vector<float> pre(rows * units);
  for (float& t : pre) t = spread(rng);
  const float inf = std::numeric_limits<float>::infinity();
  const float special[] = {0.0f,   -0.0f,   1e-8f,  -1e-8f, 0.5f,   -0.5f, 20.0f,
                           -20.0f, 80.0f,   -80.0f, 87.0f,  -87.0f, 88.0f, -88.0f,
                           100.0f, -100.0f, 1e30f,  -1e30f, inf,    -inf};
  std::copy(std::begin(special), std::end(special), pre.begin());
  std::vector<float> bias = normal_floats(units, 2.0f, rng);

  const uint64_t key = philox_key(42, Purpose::train);
  const int64_t counter_value = 123456789, offset = 7;
  const uint32_t phase = 5;

  const cuda::Stream stream;
  const cudaStream_t s = stream.get();
  DeviceBuffer<int64_t> counter(1);
  cuda::launch_set_counter(counter.data(), counter_value, s);
  const DeviceBuffer<float> d_pre = to_device(pre, s);
  const DeviceBuffer<float> d_bias = to_device(bias, s);
  const cuda::DrawNames names{key, counter.data(), offset, phase};

  for (const bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "with bias" : "without bias");
    const float* bias_ptr = with_bias ? d_bias.data() : nullptr;
    DeviceBuffer<float> prob(pre.size()), sample(pre.size()), prob_only(pre.size()),
        sample_only(pre.size());
    for (auto* buffer : {&prob, &sample, &prob_only, &sample_only}) poison(*buffer, s);
    cuda::launch_sigmoid_bernoulli(d_pre.data(), bias_ptr, rows, units, names, prob.data(),
                                   sample.data(), s);
    cuda::launch_sigmoid_bernoulli(d_pre.data(), bias_ptr, rows, units, names, prob_only.data(),
                                   nullptr, s);
    cuda::launch_sigmoid_bernoulli(d_pre.data(), bias_ptr, rows, units, names, nullptr,
                                   sample_only.data(), s);
    const std::vector<float> gpu_prob = to_host(prob, s), gpu_sample = to_host(sample, s);
    // The one-output launches write exactly what the full launch writes.
    EXPECT_EQ(0, std::memcmp(gpu_prob.data(), to_host(prob_only, s).data(), prob.bytes()));
    EXPECT_EQ(0, std::memcmp(gpu_sample.data(), to_host(sample_only, s).data(), sample.bytes()));

    int prob_failures = 0, sample_failures = 0, near_threshold = 0;
    std::vector<float> t(units), cpu_prob(units), cpu_sample(units);
    for (int64_t r = 0; r < rows; ++r) {
      const uint64_t draw_stream = static_cast<uint64_t>(counter_value + offset + r);
      for (int i = 0; i < units; ++i) t[i] = pre[r * units + i] + (with_bias ? bias[i] : 0.0f);
      cpu::sigmoid_bernoulli(t.data(), units, key, draw_stream, phase, cpu_prob.data(),
                             cpu_sample.data());
      for (int i = 0; i < units; ++i) {
        const float p = cpu_prob[i], gp = gpu_prob[r * units + i];
        const float u = philox_uniform(key, draw_stream, phase, static_cast<uint32_t>(i));
        const float tol = kSigmoidRelTol * p + FLT_MIN;
        if (!(std::fabs(gp - p) <= tol) && ++prob_failures <= 10) {
          ADD_FAILURE() << "row " << r << " unit " << i << " t " << t[i] << ": device p " << gp
                        << ", CPU p " << p;
        }
        // Given the same uniform, the draws agree wherever u is clear of p by more than the
        // probabilities' tolerance.
        if (std::fabs(u - p) <= tol) {
          ++near_threshold;
        } else if (gpu_sample[r * units + i] != cpu_sample[i] && ++sample_failures <= 10) {
          ADD_FAILURE() << "row " << r << " unit " << i << ": device sample "
                        << gpu_sample[r * units + i] << ", CPU " << cpu_sample[i] << " (u " << u
                        << ", p " << p << ")";
        }
      }
    }
    EXPECT_EQ(prob_failures, 0);
    EXPECT_EQ(sample_failures, 0);
    EXPECT_LE(near_threshold, 2) << "draws too close to their probability to compare";
  }
}

TEST(CudaKernels, ImagePickMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  const int64_t rows = 7141;
  const int d = 784;
  std::mt19937_64 rng(11);
  std::bernoulli_distribution bit(0.2);
  std::vector<uint8_t> images(rows * d);
  for (uint8_t& x : images) x = bit(rng) ? 1 : 0;
  const uint64_t key = philox_key(3, Purpose::train);

  const cuda::Stream stream;
  const cudaStream_t s = stream.get();
  const DeviceBuffer<uint8_t> d_images = to_device(images, s);
  DeviceBuffer<int64_t> counter(1), index(1);
  DeviceBuffer<float> x0(d);
  std::vector<int64_t> iterations = {0, 1, 2, 3, 100, 24999, 25000, int64_t{1} << 40};
  for (int i = 0; i < 40; ++i) iterations.push_back(static_cast<int64_t>(rng() >> 20));
  for (const int64_t t : iterations) {
    poison(x0, s);
    cuda::launch_set_counter(counter.data(), t, s);
    cuda::launch_pick_image(d_images.data(), rows, d,
                            cuda::DrawNames{key, counter.data(), 0, train_index_phase()}, x0.data(),
                            index.data(), s);
    const int64_t expected =
        index_from_bits(philox_block(key, static_cast<uint64_t>(t), train_index_phase(), 0).word[0],
                        static_cast<uint32_t>(rows));
    ASSERT_EQ(to_host(index, s)[0], expected) << "iteration " << t;
    const std::vector<float> x = to_host(x0, s);
    for (int i = 0; i < d; ++i) {
      ASSERT_EQ(x[i], images[expected * d + i] ? 1.0f : 0.0f)
          << "iteration " << t << " pixel " << i;
    }
  }
}

// cuBLAS sums in its own order, the CPU in index order. Recursive summation of n terms errs by at
// most (n - 1) u sum|terms| (u = FLT_EPSILON / 2), so two such sums of the n = d (or H) products
// plus the bias differ by at most (n + 1) FLT_EPSILON sum|terms|. The products W_ij x_i are exact
// (x is 0 or 1), so that bound is the whole story.
void expect_preactivations_match(int d, int H, float w_std, int64_t rows) {
  SCOPED_TRACE("d " + std::to_string(d) + ", H " + std::to_string(H) + ", rows " +
               std::to_string(rows));
  std::mt19937_64 rng(static_cast<uint64_t>(d * 1000 + H));
  Params params;
  params.visible = d;
  params.hidden = H;
  params.W = normal_floats(static_cast<size_t>(d) * H, w_std, rng);
  params.b = normal_floats(H, 1.0f, rng);
  params.a = normal_floats(d, 1.0f, rng);
  const std::vector<float> x = bits_as_floats(rows * d, 0.3, rng);  // (rows, d)
  const std::vector<float> h = bits_as_floats(rows * H, 0.5, rng);  // (rows, H)

  const cuda::Stream stream;
  const cudaStream_t s = stream.get();
  const cuda::CublasHandle blas;
  CUBLAS_CHECK(cublasSetStream(blas.get(), s));
  const DeviceBuffer<float> d_W = to_device(params.W, s), d_x = to_device(x, s),
                            d_h = to_device(h, s);
  DeviceBuffer<float> d_hidden(rows * H), d_visible(rows * d);
  poison(d_hidden, s);
  poison(d_visible, s);
  cuda::hidden_preactivation(blas.get(), d_W.data(), d, H, d_x.data(), rows, d_hidden.data());
  cuda::visible_preactivation(blas.get(), d_W.data(), d, H, d_h.data(), rows, d_visible.data());
  const std::vector<float> gpu_hidden = to_host(d_hidden, s), gpu_visible = to_host(d_visible, s);

  int failures = 0;
  std::vector<uint8_t> x_bytes(d);
  std::vector<float> ref_hidden(H), ref_visible(d);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < d; ++i) x_bytes[i] = x[r * d + i] != 0.0f;
    cpu::hidden_preactivation(params, x_bytes.data(), ref_hidden.data());
    cpu::visible_preactivation(params, h.data() + r * H, ref_visible.data());
    for (int j = 0; j < H; ++j) {
      double abs_sum = std::fabs(params.b[j]);
      for (int i = 0; i < d; ++i) abs_sum += std::fabs(params.W[i * H + j]) * x_bytes[i];
      const double tol = (d + 1) * FLT_EPSILON * abs_sum;
      const float gpu = gpu_hidden[r * H + j] + params.b[j];
      if (!(std::fabs(gpu - ref_hidden[j]) <= tol) && ++failures <= 10) {
        ADD_FAILURE() << "hidden row " << r << " unit " << j << ": device " << gpu << ", CPU "
                      << ref_hidden[j] << ", tolerance " << tol;
      }
    }
    for (int i = 0; i < d; ++i) {
      double abs_sum = std::fabs(params.a[i]);
      for (int j = 0; j < H; ++j) abs_sum += std::fabs(params.W[i * H + j]) * h[r * H + j];
      const double tol = (H + 1) * FLT_EPSILON * abs_sum;
      const float gpu = gpu_visible[r * d + i] + params.a[i];
      if (!(std::fabs(gpu - ref_visible[i]) <= tol) && ++failures <= 10) {
        ADD_FAILURE() << "visible row " << r << " unit " << i << ": device " << gpu << ", CPU "
                      << ref_visible[i] << ", tolerance " << tol;
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(CudaKernels, CublasPreactivationsMatchCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  expect_preactivations_match(784, 100, 0.1f, 1);  // SGEMV, the training shape
  expect_preactivations_match(784, 100, 0.1f, 9);  // SGEMM, the sampler's
  expect_preactivations_match(37, 13, 1.0f, 1);
  expect_preactivations_match(37, 13, 1.0f, 1000);
}

// The update against double: the kernel rounds lr ph (one rounding), the sum with w and the
// difference (one each), so the error is at most 3 u (|w| + lr (x0 ph0 + xk phk)), with u =
// FLT_EPSILON / 2; we allow 2 FLT_EPSILON times that scale. Likewise for b and a. It must also
// equal, bit for bit, the same float operations in the CPU reference's order (host/cpu_backend.cpp)
// rounded one by one (`rounded` keeps the host compiler from fusing them).
float rounded(float x) {
  volatile float stored = x;
  return stored;
}

TEST(CudaKernels, CdUpdateMatchesCpu) {
  RBM_REQUIRE_CUDA_DEVICE();
  const int d = 784, H = 100;
  for (const bool with_a : {false, true}) {
    for (const float lr : {0.005f, 0.5f}) {
      SCOPED_TRACE(std::string(with_a ? "with a" : "without a") + ", lr " + std::to_string(lr));
      std::mt19937_64 rng(with_a ? 5 : 6);
      std::uniform_real_distribution<float> unit_interval(0.0f, 1.0f);
      const std::vector<float> W = normal_floats(static_cast<size_t>(d) * H, 0.1f, rng);
      const std::vector<float> b = normal_floats(H, 0.1f, rng);
      const std::vector<float> a = normal_floats(d, 1.0f, rng);
      const std::vector<float> x0 = bits_as_floats(d, 0.2, rng), xk = bits_as_floats(d, 0.2, rng);
      std::vector<float> ph0(H), phk(H);
      for (int j = 0; j < H; ++j) {
        ph0[j] = unit_interval(rng);
        phk[j] = unit_interval(rng);
      }

      const cuda::Stream stream;
      const cudaStream_t s = stream.get();
      DeviceBuffer<float> d_W = to_device(W, s), d_b = to_device(b, s), d_a = to_device(a, s);
      const DeviceBuffer<float> d_x0 = to_device(x0, s), d_xk = to_device(xk, s),
                                d_ph0 = to_device(ph0, s), d_phk = to_device(phk, s);
      cuda::launch_cd_update(d_W.data(), d_b.data(), with_a ? d_a.data() : nullptr, d, H,
                             d_x0.data(), d_ph0.data(), d_xk.data(), d_phk.data(), lr, s);
      const std::vector<float> new_W = to_host(d_W, s), new_b = to_host(d_b, s),
                               new_a = to_host(d_a, s);

      int failures = 0;
      const auto check = [&](const char* what, int index, float gpu, double exact, double scale,
                             float same_order) {
        const double tol = 2 * FLT_EPSILON * scale;
        if ((!(std::fabs(gpu - exact) <= tol) || gpu != same_order) && ++failures <= 10) {
          ADD_FAILURE() << what << "[" << index << "]: device " << gpu << ", double " << exact
                        << ", CPU order " << same_order << ", tolerance " << tol;
        }
      };
      const double lr_d = lr;
      for (int i = 0; i < d; ++i) {
        for (int j = 0; j < H; ++j) {
          const int at = i * H + j;
          const double exact =
              W[at] + lr_d * (x0[i] * ph0[j] - xk[i] * static_cast<double>(phk[j]));
          const double scale = std::fabs(W[at]) + lr_d * (x0[i] * ph0[j] + xk[i] * phk[j]);
          float same_order = W[at];
          if (x0[i] != 0.0f) same_order = rounded(same_order + rounded(lr * ph0[j]));
          if (xk[i] != 0.0f) same_order = rounded(same_order - rounded(lr * phk[j]));
          check("W", at, new_W[at], exact, scale, same_order);
        }
      }
      for (int j = 0; j < H; ++j) {
        const double exact = b[j] + lr_d * (static_cast<double>(ph0[j]) - phk[j]);
        const float same_order = rounded(b[j] + rounded(lr * rounded(ph0[j] - phk[j])));
        check("b", j, new_b[j], exact, std::fabs(b[j]) + lr_d * (ph0[j] + phk[j]), same_order);
      }
      for (int i = 0; i < d; ++i) {
        float same_order = a[i];
        double exact = a[i];
        if (with_a) {
          exact += lr_d * (static_cast<double>(x0[i]) - xk[i]);
          if (x0[i] != 0.0f) same_order = rounded(same_order + lr);
          if (xk[i] != 0.0f) same_order = rounded(same_order - lr);
        }
        check("a", i, new_a[i], exact, std::fabs(a[i]) + lr_d * (x0[i] + xk[i]), same_order);
      }
      EXPECT_EQ(failures, 0);
    }
  }
}

}  // namespace
}  // namespace rbm
