// The CPU backend's building blocks (see cpu_kernels.hpp). Loops are written so that g++ vectorizes
// them with AVX2: Philox over blocks, the branch-free sigmoid over units, rows of W as vectors.
#include "host/cpu_kernels.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <array>
#include <bit>
#include <cstring>
#include <vector>

#include "host/float8.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

namespace rbm::cpu {

void hidden_preactivation(const Params& params, const uint8_t* x, float* out) {
  const int d = params.visible, H = params.hidden;
  for (int j = 0; j < H; ++j) out[j] = params.b[j];
  for (int i = 0; i < d; ++i) {
    if (!x[i]) continue;
    const float* w_row = params.W.data() + static_cast<size_t>(i) * H;  // (H)
    for (int j = 0; j < H; ++j) out[j] += w_row[j];
  }
}

void visible_preactivation(const Params& params, const float* h, float* out) {
  const int d = params.visible, H = params.hidden;
  for (int i = 0; i < d; ++i) {
    const float* w_row = params.W.data() + static_cast<size_t>(i) * H;  // (H)
    float sum = 0.0f;
    for (int j = 0; j < H; ++j) sum += w_row[j] * h[j];
    out[i] = sum + (params.has_visible_bias() ? params.a[i] : 0.0f);
  }
}

namespace {

// sum[0, 8 B) = the sum over k < n_rows of row(k)[column, column + 8 B), in B accumulators that
// the compiler keeps in registers (the loops over b unroll; always_inline: as a call it left AIS
// 5% slower).
template <int B, typename Row>
__attribute__((always_inline)) inline void sum_of_row_blocks(const Row& row, int n_rows, int column,
                                                             float* sum) {
  Float8 s[B] = {};
  for (int k = 0; k < n_rows; ++k) {
    const float* w = row(k) + column;
    for (int b = 0; b < B; ++b) s[b] += load8(w + 8 * b);
  }
  for (int b = 0; b < B; ++b) store8(sum + 8 * b, s[b]);
}

}  // namespace

// Eight 8-float blocks at a time, then four, then one: independent additions in flight (one would
// wait on its own latency for every row), and each pass over the rows' indices covers as much of
// a row as the registers hold (AIS's rows of W' are 784 wide: eight at a time took 8% off an AIS
// from the uniform base at H 100 against four, 2% from the base rates). Each element's sum runs
// over the rows in order, whatever the blocks: the same bits either way.
void sum_of_rows(const float* matrix, size_t stride, const int* rows, int n_rows, int width,
                 float* sum) {
  const auto row = [&](int k) { return matrix + static_cast<size_t>(rows[k]) * stride; };
  int j = 0;
  for (; j + 64 <= width; j += 64) sum_of_row_blocks<8>(row, n_rows, j, sum + j);
  for (; j + 32 <= width; j += 32) sum_of_row_blocks<4>(row, n_rows, j, sum + j);
  for (; j < width; j += 8) sum_of_row_blocks<1>(row, n_rows, j, sum + j);
}

#if defined(__AVX2__)
namespace {

// kLeftPack[m] holds, in 4-bit fields from the lowest, the positions of the set bits of the 8-bit
// mask m in increasing order: 0b10110 -> 1, 2, 4 = 0x421.
constexpr std::array<uint32_t, 256> kLeftPack = [] {
  std::array<uint32_t, 256> table{};
  for (uint32_t mask = 0; mask < 256; ++mask) {
    int field = 0;
    for (uint32_t bit = 0; bit < 8; ++bit) {
      if ((mask >> bit) & 1u) table[mask] |= bit << (4 * field++);
    }
  }
  return table;
}();

}  // namespace
#endif

// Branch-free: a loop over the set bits of each block's mask mispredicted about once per unit
// drawn (12% of AIS's time). Each block of 8 stores all 8 lanes of its packed indices at
// out + count; count <= i keeps that store inside out[0, n), and the next block's overwrites
// the lanes past the set bits.
int indices_where_less(const float* below, const float* above, int n, int* out) {
  int count = 0, i = 0;
#if defined(__AVX2__)
  const __m256i field_shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  for (; i + 8 <= n; i += 8) {
    const unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(below + i), _mm256_loadu_ps(above + i), _CMP_LT_OQ)));
    const __m256i fields =
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(kLeftPack[mask])), field_shifts);
    const __m256i indices =
        _mm256_add_epi32(_mm256_and_si256(fields, _mm256_set1_epi32(0xF)), _mm256_set1_epi32(i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + count), indices);
    count += std::popcount(mask);
  }
#endif
  for (; i < n; ++i) {
    out[count] = i;
    count += below[i] < above[i] ? 1 : 0;
  }
  return count;
}

namespace {

#if defined(__AVX2__) && defined(__FMA__)
// 32x32 -> 64-bit products of the eight 32-bit lanes of a with m (m broadcast), split in halves.
// The low halves are vpmulld's: one instruction where a shift and a blend of the 64-bit products
// took two (Philox's rounds are bound by instruction throughput; 10% fewer cycles a unit).
inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);                        // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // lanes 1, 3, 5, 7
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_mullo_epi32(a, m);
}

// uniform_from_bits on eight lanes. AVX2 converts only signed integers, so x = hi * 2^16 + lo
// with both halves exact in float; the one rounding of hi * 2^16 + lo (a fused multiply-add) is
// the correctly rounded float(x), as in the scalar code, and * 2^-32 + 2^-33 rounds once too.
inline __m256 uniform8(__m256i x) {
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(x, 16));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32(0xFFFF)));
  const __m256 f = _mm256_fmadd_ps(hi, _mm256_set1_ps(65536.0f), lo);
  return _mm256_fmadd_ps(f, _mm256_set1_ps(0x1p-32f), _mm256_set1_ps(0x1p-33f));
}

// Philox4x32-10 rounds on G groups of eight counters (lane l of group g is block
// first_block + 8 g + l) at once: the groups are independent, so their dependent multiply chains
// overlap in the pipeline instead of waiting on each other.
template <int G>
void philox_rounds(uint64_t key, uint64_t stream, uint32_t phase, uint32_t first_block,
                   __m256i (&c)[G][4]) {
  for (int g = 0; g < G; ++g) {
    c[g][0] = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first_block + 8 * g)),
                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    c[g][1] = _mm256_set1_epi32(static_cast<int>(phase));
    c[g][2] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
    c[g][3] = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  }
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < G; ++g) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(c[g][0], m0, hi0, lo0);
      mulhilo8(c[g][2], m1, hi1, lo1);
      c[g][0] = _mm256_xor_si256(_mm256_xor_si256(hi1, c[g][1]), key0);
      c[g][1] = lo1;
      c[g][2] = _mm256_xor_si256(_mm256_xor_si256(hi0, c[g][3]), key1);
      c[g][3] = lo0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// Writes the 32 uniforms of eight blocks given as four words per lane: a 4 x 8 transpose into
// unit order.
inline void store_uniforms_32(const __m256i (&words)[4], float* out) {
  const __m256 u0 = uniform8(words[0]), u1 = uniform8(words[1]);
  const __m256 u2 = uniform8(words[2]), u3 = uniform8(words[3]);
  const __m256 t0 = _mm256_unpacklo_ps(u0, u1), t1 = _mm256_unpackhi_ps(u0, u1);
  const __m256 t2 = _mm256_unpacklo_ps(u2, u3), t3 = _mm256_unpackhi_ps(u2, u3);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(s0, s1, 0x20));       // blocks 0, 1
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(s2, s3, 0x20));   // blocks 2, 3
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(s0, s1, 0x31));  // blocks 4, 5
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(s2, s3, 0x31));  // blocks 6, 7
}

// The 32 G uniforms of blocks [first_block, first_block + 8 G).
template <int G>
void philox_uniforms_simd(uint64_t key, uint64_t stream, uint32_t phase, uint32_t first_block,
                          float* out) {
  __m256i c[G][4];
  philox_rounds<G>(key, stream, phase, first_block, c);
  for (int g = 0; g < G; ++g) store_uniforms_32(c[g], out + 32 * g);
}
#endif

}  // namespace

void philox_uniforms(uint64_t key, uint64_t stream, uint32_t phase, int first_unit, int n,
                     float* uniforms) {
  const uint32_t first_block = static_cast<uint32_t>(first_unit) / 4;
  int unit = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; unit + 128 <= n; unit += 128) {
    philox_uniforms_simd<4>(key, stream, phase, first_block + static_cast<uint32_t>(unit / 4),
                            uniforms + unit);
  }
  if (unit < n) {
    // The last n - unit < 128 units: G groups run together and the units past n dropped (a row of
    // H 100 is one G 4 call for 100 of its 128 units; d 784 ends in one G 1 call for 16 of 32).
    // Groups run one after another, or the blocks one at a time, would each wait on their own
    // multiply chain (measured: G 4 for 128 units costs less than three G 1 calls and a block).
    alignas(32) float rest[128];
    const uint32_t block = first_block + static_cast<uint32_t>(unit / 4);
    switch ((n - unit + 31) / 32) {
      case 1:
        philox_uniforms_simd<1>(key, stream, phase, block, rest);
        break;
      case 2:
        philox_uniforms_simd<2>(key, stream, phase, block, rest);
        break;
      case 3:
        philox_uniforms_simd<3>(key, stream, phase, block, rest);
        break;
      default:
        philox_uniforms_simd<4>(key, stream, phase, block, rest);
        break;
    }
    std::memcpy(uniforms + unit, rest, static_cast<size_t>(n - unit) * sizeof(float));
    unit = n;
  }
#endif
  for (; unit < n; unit += 4) {
    const PhiloxBlock r =
        philox_block(key, stream, phase, first_block + static_cast<uint32_t>(unit / 4));
    for (int w = 0; w < 4 && unit + w < n; ++w) uniforms[unit + w] = uniform_from_bits(r.word[w]);
  }
}

void sigmoid_bernoulli(const float* pre, int n, uint64_t key, uint64_t stream, uint32_t phase,
                       float* prob, float* sample) {
  thread_local std::vector<float> uniforms;
  uniforms.resize(static_cast<size_t>(n));
  philox_uniforms(key, stream, phase, 0, n, uniforms.data());
  for (int u = 0; u < n; ++u) {
    const float p = sigmoid(pre[u]);
    prob[u] = p;
    sample[u] = bernoulli(uniforms[u], p);
  }
}

}  // namespace rbm::cpu
