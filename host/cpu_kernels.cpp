// The CPU backend's building blocks (see cpu_kernels.hpp). Loops are written so that g++ vectorizes
// them with AVX2: Philox over blocks, the branch-free sigmoid over units, rows of W as vectors.
#include "host/cpu_kernels.hpp"

#if defined(__AVX2__) || RBM_SIMD_AVX512
#include <immintrin.h>
#endif

#include <array>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>
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

// sum[0, L B) = the sum over k < n_rows of row(k)[column, column + L B), in B accumulators of L
// lanes (Vec: Float8 or Float16) that the compiler keeps in registers (the loops over b unroll;
// always_inline: as a call it left AIS 5% slower).
template <typename Vec, int B, typename Row>
__attribute__((always_inline)) inline void sum_of_row_blocks(const Row& row, int n_rows, int column,
                                                             float* sum) {
  constexpr int kLanes = sizeof(Vec) / sizeof(float);
  Vec s[B] = {};
  for (int k = 0; k < n_rows; ++k) {
    const float* w = row(k) + column;
    for (int b = 0; b < B; ++b) {
      Vec v;
      std::memcpy(&v, w + kLanes * b, sizeof v);
      s[b] += v;
    }
  }
  for (int b = 0; b < B; ++b) std::memcpy(sum + kLanes * b, &s[b], sizeof s[b]);
}

// Columns [j, ...) of the sums in blocks of Vec: runs of eight blocks, then four, then one, up to
// the last whole block before width; returns the column where it stopped.
template <typename Vec, typename Row>
__attribute__((always_inline)) inline int sum_of_row_block_runs(const Row& row, int n_rows, int j,
                                                                int width, float* sum) {
  constexpr int kLanes = sizeof(Vec) / sizeof(float);
  for (; j + 8 * kLanes <= width; j += 8 * kLanes) {
    sum_of_row_blocks<Vec, 8>(row, n_rows, j, sum + j);
  }
  for (; j + 4 * kLanes <= width; j += 4 * kLanes) {
    sum_of_row_blocks<Vec, 4>(row, n_rows, j, sum + j);
  }
  for (; j + kLanes <= width; j += kLanes) sum_of_row_blocks<Vec, 1>(row, n_rows, j, sum + j);
  return j;
}

typedef float Float16 __attribute__((vector_size(64)));

}  // namespace

// Eight 8-float blocks at a time, then four, then one: independent additions in flight (one would
// wait on its own latency for every row), and each pass over the rows' indices covers as much of
// a row as the registers hold (AIS's rows of W' are 784 wide: eight at a time took 8% off an AIS
// from the uniform base at H 100 against four, 2% from the base rates). With AVX-512, rows of 128
// floats or more go in 16-float blocks first: 784-wide rows summed 7% faster from L2 (H 100) and
// 28% from beyond it (H 500, 1.5 MB), where the recipe's 104-wide rows were 10% slower. Each
// element's sum runs over the rows in order, whatever the blocks: the same bits either way.
void sum_of_rows(const float* matrix, size_t stride, const int* rows, int n_rows, int width,
                 float* sum) {
  const auto row = [&](int k) { return matrix + static_cast<size_t>(rows[k]) * stride; };
  int j = 0;
#if RBM_SIMD_AVX512
  if (width >= 128 && simd() == Simd::avx512) {
    run_on_avx512(
        [&]() RBM_SIMD_BODY { j = sum_of_row_block_runs<Float16>(row, n_rows, j, width, sum); });
  }
#endif
  sum_of_row_block_runs<Float8>(row, n_rows, j, width, sum);
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

// Philox4x32-10 with AVX2: G groups of eight counters (lane l of group g is block
// first_block + 8 g + l) at once: the groups are independent, so their dependent multiply chains
// overlap in the pipeline instead of waiting on each other.
struct Avx2Groups {
  static constexpr int kUnits = 32;  // a group's: eight blocks of four

  // The kUnits G uniforms of blocks [first_block, first_block + 8 G).
  template <int G>
  static void uniforms(uint64_t key, uint64_t stream, uint32_t phase, uint32_t first_block,
                       float* out) {
    __m256i c[G][4];
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
    for (int g = 0; g < G; ++g) store_uniforms_32(c[g], out + kUnits * g);
  }
};
#endif

#if RBM_SIMD_AVX512
// Philox4x32-10 with AVX-512F, chosen at run time (the build's baseline is AVX2): sixteen counters
// a vector, and two instructions fewer a round than AVX2 takes for eight: the three-way xors are
// one vpternlogd each, and the conversion to float is vcvtudq2ps, which takes unsigned integers
// and rounds correctly (uniform8's two conversions and a multiply-add are one instruction). Half
// AVX2's time a unit here (0.25-0.31 ns against 0.58-0.68 at 784 units, an AMD EPYC).
struct Avx512Groups {
  static constexpr int kUnits = 64;  // a group's: sixteen blocks of four

  // The zero-masking forms with every lane on are the plain instructions: GCC 12's plain forms
  // pass an undefined vector that -Wuninitialized (an error here) takes for uninitialized (GCC
  // bug 105593).
  static constexpr __mmask8 kAll64 = 0xFF;     // the eight 64-bit lanes
  static constexpr __mmask16 kAll32 = 0xFFFF;  // the sixteen 32-bit lanes

  // 32x32 -> 64-bit products of the sixteen lanes of a with m, split in halves (as mulhilo8).
  __attribute__((target("avx512f"))) static void mulhilo(__m512i a, __m512i m, __m512i& hi,
                                                         __m512i& lo) {
    const __m512i even = _mm512_maskz_mul_epu32(kAll64, a, m);  // lanes 0, 2, .., 14
    const __m512i odd = _mm512_maskz_mul_epu32(kAll64, _mm512_maskz_srli_epi64(kAll64, a, 32),
                                               m);  // lanes 1, 3, .., 15
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_maskz_srli_epi64(kAll64, even, 32), odd);
    lo = _mm512_mullo_epi32(a, m);
  }

  // The kUnits G uniforms of blocks [first_block, first_block + 16 G). Not inlined into its
  // callers, which are compiled for AVX2.
  template <int G>
  __attribute__((target("avx512f"))) static void uniforms(uint64_t key, uint64_t stream,
                                                          uint32_t phase, uint32_t first_block,
                                                          float* out) {
    __m512i c[G][4];
    for (int g = 0; g < G; ++g) {
      c[g][0] =
          _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first_block + 16 * g)),
                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
      c[g][1] = _mm512_set1_epi32(static_cast<int>(phase));
      c[g][2] = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
      c[g][3] = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
    }
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
    const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
    constexpr int kXor3 = 0x96;  // vpternlogd's truth table of a ^ b ^ c
    for (int round = 0; round < 10; ++round) {
      const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
      const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
      for (int g = 0; g < G; ++g) {
        __m512i hi0, lo0, hi1, lo1;
        mulhilo(c[g][0], m0, hi0, lo0);
        mulhilo(c[g][2], m1, hi1, lo1);
        c[g][0] = _mm512_ternarylogic_epi32(hi1, c[g][1], key0, kXor3);
        c[g][1] = lo1;
        c[g][2] = _mm512_ternarylogic_epi32(hi0, c[g][3], key1, kXor3);
        c[g][3] = lo0;
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Each group's four words a lane, as uniforms, transposed into unit order (4 b + w for word w
    // of block b): pairs (word 0, word 1) and (2, 3) of blocks 0-7 and 8-15 interleave, then the
    // pairs' 64 bits do, four blocks a store.
    const __m512 scale = _mm512_set1_ps(0x1p-32f), half_step = _mm512_set1_ps(0x1p-33f);
    const __m512i pairs_low =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pairs_high =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i quads_low = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i quads_high = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    for (int g = 0; g < G; ++g) {
      __m512 u[4];
      for (int w = 0; w < 4; ++w) {
        u[w] = _mm512_fmadd_ps(_mm512_maskz_cvtepu32_ps(kAll32, c[g][w]), scale, half_step);
      }
      const __m512d w01_low = _mm512_castps_pd(_mm512_permutex2var_ps(u[0], pairs_low, u[1]));
      const __m512d w01_high = _mm512_castps_pd(_mm512_permutex2var_ps(u[0], pairs_high, u[1]));
      const __m512d w23_low = _mm512_castps_pd(_mm512_permutex2var_ps(u[2], pairs_low, u[3]));
      const __m512d w23_high = _mm512_castps_pd(_mm512_permutex2var_ps(u[2], pairs_high, u[3]));
      double* group_out = reinterpret_cast<double*>(out + kUnits * g);  // 2 floats a double
      _mm512_storeu_pd(group_out, _mm512_permutex2var_pd(w01_low, quads_low, w23_low));
      _mm512_storeu_pd(group_out + 8, _mm512_permutex2var_pd(w01_low, quads_high, w23_low));
      _mm512_storeu_pd(group_out + 16, _mm512_permutex2var_pd(w01_high, quads_low, w23_high));
      _mm512_storeu_pd(group_out + 24, _mm512_permutex2var_pd(w01_high, quads_high, w23_high));
    }
  }
};
#endif

// uniforms[0, n) from Groups: four groups at a time, then the last units in one call of 1 to 4
// groups, the units past n dropped (a row of H 100 is one AVX2 call of 4 groups for 100 of its 128
// units; d 784 ends in one call of 1 group for 16 of 32). Groups run one after another, or the
// blocks one at a time, would each wait on their own multiply chain (measured with AVX2: 4 groups
// for 128 units cost less than three calls of 1 and a block).
template <class Groups>
void uniforms_by_groups(uint64_t key, uint64_t stream, uint32_t phase, uint32_t first_block, int n,
                        float* uniforms) {
  constexpr int kChunk = 4 * Groups::kUnits;
  int unit = 0;
  for (; unit + kChunk <= n; unit += kChunk) {
    Groups::template uniforms<4>(key, stream, phase, first_block + static_cast<uint32_t>(unit / 4),
                                 uniforms + unit);
  }
  if (unit == n) return;
  alignas(64) float rest[kChunk];
  const uint32_t block = first_block + static_cast<uint32_t>(unit / 4);
  switch ((n - unit + Groups::kUnits - 1) / Groups::kUnits) {
    case 1:
      Groups::template uniforms<1>(key, stream, phase, block, rest);
      break;
    case 2:
      Groups::template uniforms<2>(key, stream, phase, block, rest);
      break;
    case 3:
      Groups::template uniforms<3>(key, stream, phase, block, rest);
      break;
    default:
      Groups::template uniforms<4>(key, stream, phase, block, rest);
      break;
  }
  std::memcpy(uniforms + unit, rest, static_cast<size_t>(n - unit) * sizeof(float));
}

// philox_uniforms with `simd`, which is usable.
void uniforms_with(Simd simd, uint64_t key, uint64_t stream, uint32_t phase, int first_unit, int n,
                   float* uniforms) {
  const uint32_t first_block = static_cast<uint32_t>(first_unit) / 4;
  switch (simd) {
#if RBM_SIMD_AVX512
    case Simd::avx512:
      uniforms_by_groups<Avx512Groups>(key, stream, phase, first_block, n, uniforms);
      return;
#endif
#if defined(__AVX2__) && defined(__FMA__)
    case Simd::avx2:
      uniforms_by_groups<Avx2Groups>(key, stream, phase, first_block, n, uniforms);
      return;
#endif
    default:
      break;
  }
  for (int unit = 0; unit < n; unit += 4) {
    const PhiloxBlock r =
        philox_block(key, stream, phase, first_block + static_cast<uint32_t>(unit / 4));
    for (int w = 0; w < 4 && unit + w < n; ++w) uniforms[unit + w] = uniform_from_bits(r.word[w]);
  }
}

}  // namespace

void philox_uniforms(Simd simd, uint64_t key, uint64_t stream, uint32_t phase, int first_unit,
                     int n, float* uniforms) {
  // Checked here, not on the path of every draw: an unusable path would be an illegal instruction.
  if (!simd_usable(simd)) {
    throw std::invalid_argument(std::string("philox_uniforms: ") + simd_name(simd) +
                                " is not usable here");
  }
  uniforms_with(simd, key, stream, phase, first_unit, n, uniforms);
}

void philox_uniforms(uint64_t key, uint64_t stream, uint32_t phase, int first_unit, int n,
                     float* uniforms) {
  uniforms_with(simd(), key, stream, phase, first_unit, n, uniforms);
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
