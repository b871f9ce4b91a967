// The fused single-sample CD-k trainer's algorithm (issue 8), written once for two executors:
// the CUDA kernel in kernels/fused_cd.cu, where each CTA of a thread-block cluster runs it for
// its own threads, and tests/test_fused_emulation.cpp, which runs every CTA's threads one after
// another on the CPU (phase by phase, in any order) and checks the result against the CPU
// reference build. So the kernel's indexing, draws and update order are tested in CI; only the
// barriers and distributed shared memory need a device.
//
// One cluster of C CTAs of T threads. CTA c owns rows [c R, (c + 1) R) of W (R = ceil(d / C))
// in its shared memory, with its slice of x0, xk and a, and a copy of b. Per iteration t:
//   pick the image (every CTA draws the same index); each CTA sums its rows of W where x0 is 1
//   into its partial (H) (its threads in column groups, each down every groups-th row, then the
//   groups' sums added); cluster barrier; every CTA adds the C partials in rank order (so all
//   CTAs hold identical ph0 = sigm(b + W'x0)) and draws h from them in the same phase (every CTA,
//   identically); then k times: the CTA's rows of W h + a (row groups of threads, then the
//   groups' sums added), their sigmoid and draws (units named by their global row), the partial
//   sums of W'xk, barrier, ph = sigm(b + W'xk) and, but after the last step, h drawn from it;
//   finally each CTA updates its rows of W and a, and its copy of b (identically everywhere).
//   At CD-k that is 5 + 4k barriers of the CTA and 1 + k of the cluster an iteration (17 and 4
//   at CD-3; until 2026-12-04 the hidden draw was a phase of its own, 20 and 4). The partials
//   are double-buffered, so one cluster barrier per hidden layer suffices: a CTA writes buffer p
//   again only after the next barrier, which no CTA reaches before it has finished reading
//   buffer p.
// Ternary hidden units: ph0 and phk hold the pre-activations t = b + W'x while the chain runs
// (the ternary draw needs t, not a probability); the update takes G(t) from them.
//
// An executor E provides, for the CTA (device) or every CTA (emulation):
//   e.each_thread(f)       calls f(cta, thread, threads) for its threads: one phase;
//   e.sync_cta()           __syncthreads(): the phases before it are done in this CTA;
//   e.sync_cluster()       cluster.sync(): ... in every CTA of the cluster;
//   e.partials_to_write(cta, p)  this CTA's partials buffer p (H), to write;
//   e.partials_of(cta, r, p)     CTA r's partials buffer p (H), to read (distributed shared
//                                memory on the device, where r is not this CTA).
// Phases only communicate across a sync: a thread reads what another thread of its phase
// writes never (the emulator checks that every two phases have a sync between them and that
// the thread order does not change the result). Between two cluster barriers the CTAs run at
// their own pace, so a CTA's partials buffer is written there or read there by other CTAs, never
// both; and each CTA waits at a last cluster barrier after its last read of another's partials,
// which must not exit before (the emulator checks both).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "host/backend.hpp"
#include "host/model.hpp"
#include "kernels/philox.h"
#include "kernels/rbm_math.h"

#if defined(__CUDACC__)
#define RBM_FUSED_HD __host__ __device__
#else
#define RBM_FUSED_HD
#endif

namespace rbm::fused {

// What every CTA shares: the problem, in global memory (device) or host memory (emulation).
struct Problem {
  float* W = nullptr;  // (d, H), row-major
  float* b = nullptr;  // (H)
  float* a = nullptr;  // (d), null without visible bias
  int d = 0, H = 0;
  const uint8_t* images = nullptr;  // (rows, d) of 0/1
  int64_t rows = 0;
  uint64_t key = 0;  // philox_key(seed, Purpose::train)
  float lr = 0.0f;
  int k = 1;
};

RBM_FUSED_HD inline int rows_per_cta(int d, int cluster_ctas) {
  return (d + cluster_ctas - 1) / cluster_ctas;
}

// W's row stride in shared memory: H rounded up to odd, so that the visible pass's threads
// (a row group's threads, one per row, all reading column j at once) hit 32 different banks.
RBM_FUSED_HD inline int row_stride(int H) { return H | 1; }

// How many groups of H threads a CTA's threads make (at least 1): the passes down W's columns
// (the partial sums, the update) give group g rows g, g + groups, ..., so that more threads
// than hidden units shorten each thread's walk down a column.
RBM_FUSED_HD inline int column_groups(int threads, int H) { return threads > H ? threads / H : 1; }

// Likewise along W's rows (the visible pass): groups of R threads, group g summing the units
// g, g + groups, ... of a row.
RBM_FUSED_HD inline int row_groups(int threads, int R) { return threads > R ? threads / R : 1; }

// One CTA's shared memory, in floats: a 16-byte header (the image index, int64), W rows
// (R, stride), partials (2, H), b, ph0, phk, h (H each), the column groups' sums (groups, H),
// the row groups' sums (groups, R), x0, xk, a (R each).
constexpr int kHeaderFloats = 4;
RBM_FUSED_HD inline size_t cta_floats(int d, int H, int cluster_ctas, int threads) {
  const size_t R = static_cast<size_t>(rows_per_cta(d, cluster_ctas));
  return kHeaderFloats + R * static_cast<size_t>(row_stride(H)) + 6 * static_cast<size_t>(H) +
         static_cast<size_t>(column_groups(threads, H)) * H +
         static_cast<size_t>(row_groups(threads, static_cast<int>(R))) * R + 3 * R;
}

// One CTA's view of its shared memory (each thread holds a copy of the pointers).
struct Cta {
  int rank = 0, first_row = 0, n_rows = 0, stride = 0;
  int H = 0;                    // hidden units
  int R = 0;                    // rows per CTA (n_rows, but for the last CTAs)
  int groups = 1;               // column groups (column_groups)
  int row_groups = 1;           // row groups (row_groups)
  int64_t* image = nullptr;     // the iteration's image index (1)
  float* W = nullptr;           // (n_rows, stride): rows first_row.. of W
  float* partials = nullptr;    // (2, H): this CTA's part of W'x, double-buffered (through the
                                // executor's partials_to_write and partials_of)
  float* b = nullptr;           // (H): this CTA's copy of b
  float* ph0 = nullptr;         // (H): sigm(b + W'x0); ternary: b + W'x0
  float* phk = nullptr;         // (H): sigm(b + W'xk); ternary: b + W'xk
  float* h = nullptr;           // (H): the hidden draw
  float* group_sums = nullptr;  // (groups, H): each column group's part of W'x
  float* row_sums = nullptr;    // (row_groups, R): each row group's part of W h
  float* x0 = nullptr;          // (n_rows): the image's pixels of this CTA's rows, 0 or 1
  float* xk = nullptr;          // (n_rows): the visible draw
  float* a = nullptr;           // (n_rows): this CTA's part of a (0 without visible bias)
};

// Carves CTA `rank`'s view from its shared memory `base` (16-byte aligned, cta_floats long).
RBM_FUSED_HD inline Cta carve_cta(float* base, int d, int H, int cluster_ctas, int threads,
                                  int rank) {
  Cta c;
  const int R = rows_per_cta(d, cluster_ctas);
  c.rank = rank;
  c.first_row = rank * R;
  c.n_rows = d - c.first_row < R ? (d - c.first_row > 0 ? d - c.first_row : 0) : R;
  c.stride = row_stride(H);
  c.H = H;
  c.R = R;
  c.groups = column_groups(threads, H);
  c.row_groups = row_groups(threads, R);
  c.image = reinterpret_cast<int64_t*>(base);
  c.W = base + kHeaderFloats;
  c.partials = c.W + static_cast<size_t>(R) * c.stride;
  c.b = c.partials + 2 * H;
  c.ph0 = c.b + H;
  c.phk = c.ph0 + H;
  c.h = c.phk + H;
  c.group_sums = c.h + H;
  c.row_sums = c.group_sums + static_cast<size_t>(c.groups) * H;
  c.x0 = c.row_sums + static_cast<size_t>(c.row_groups) * R;
  c.xk = c.x0 + R;
  c.a = c.xk + R;
  return c;
}

// group_sums (groups, H): thread (g, j) sums column j of this CTA's rows g, g + groups, ...
// where x (n_rows) is 1, in row order.
RBM_FUSED_HD inline void column_group_sums(const Cta& c, const float* x, int H, int thread,
                                           int threads) {
  for (int q = thread; q < c.groups * H; q += threads) {
    const int j = q % H, group = q / H;
    float sum = 0.0f;
    for (int i = group; i < c.n_rows; i += c.groups) {
      if (x[i] != 0.0f) sum += c.W[i * c.stride + j];
    }
    c.group_sums[group * H + j] = sum;
  }
}

// partial (H) = the column groups' sums added in group order: this CTA's part of W'x.
RBM_FUSED_HD inline void add_group_sums(const Cta& c, int H, float* partial, int thread,
                                        int threads) {
  for (int j = thread; j < H; j += threads) {
    float total = 0.0f;
    for (int g = 0; g < c.groups; ++g) total += c.group_sums[g * H + j];
    partial[j] = total;
  }
}

// Roundings spelled out for the update, as the CPU reference build (x86-64-v3,
// -ffp-contract=fast) rounds: W += lr ph is a product then a sum (the CPU stores lr ph first);
// b += lr (ph0 - phk) is one fused multiply-add. The device's compiler would otherwise choose.
RBM_FUSED_HD inline float add_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, y);
#else
  return x + y;
#endif
}
RBM_FUSED_HD inline float fma_rn(float x, float y, float z) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(x, y, z);
#else
  return std::fma(x, y, z);
#endif
}
RBM_FUSED_HD inline float mul_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, y);
#else
  return x * y;
#endif
}

// The draw named (key, stream, phase, unit) as a uniform in (0, 1] (kernels/philox.h).
RBM_FUSED_HD inline float uniform(uint64_t key, uint64_t stream, uint32_t phase, int unit) {
  return philox_uniform(key, stream, phase, static_cast<uint32_t>(unit));
}

// Runs iterations [first, first + count) of single-sample CD-k, from loading W, b and a into
// the CTAs' shared memory to storing them back. kCtas (the cluster's size) is a template
// parameter so that the sum over the cluster's partials unrolls.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <HiddenType kType, int kCtas, class Executor>
RBM_FUSED_HD void run_fused_cd(Executor& e, const Problem& p, int64_t first, int64_t count) {
  const int d = p.d, H = p.H;
  const bool has_a = p.a != nullptr;

  e.each_thread([&](Cta& c, int thread, int threads) {
    for (int i = 0; i < c.n_rows; ++i) {
      for (int j = thread; j < H; j += threads) {
        c.W[i * c.stride + j] = p.W[static_cast<int64_t>(c.first_row + i) * H + j];
      }
    }
    for (int j = thread; j < H; j += threads) c.b[j] = p.b[j];
    for (int i = thread; i < c.n_rows; i += threads) c.a[i] = has_a ? p.a[c.first_row + i] : 0.0f;
  });
  e.sync_cta();

  // ph (H) = sigm(b + the cluster's partials of buffer `buffer`, added in rank order): the same
  // in every CTA. Ternary: ph = b + the partials, the pre-activation itself. With draw_step >= 0,
  // the thread that computes ph_j then draws h_j of that step of iteration `stream` from it: the
  // hidden draw needs no phase (and no barrier) of its own.
  const auto combine_partials = [&](int buffer, bool positive, uint64_t stream, int draw_step) {
    e.each_thread([&](Cta& c, int thread, int threads) {
      float* ph = positive ? c.ph0 : c.phk;
      for (int j = thread; j < H; j += threads) {
        float total = 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int rank = 0; rank < kCtas; ++rank) total += e.partials_of(c, rank, buffer)[j];
        const float mean_or_t =
            kType == HiddenType::ternary ? c.b[j] + total : sigmoid(c.b[j] + total);
        ph[j] = mean_or_t;
        if (draw_step < 0) continue;
        const float u = uniform(p.key, stream, train_hidden_phase(draw_step), j);
        if constexpr (kType == HiddenType::ternary) {
          c.h[j] = ternary_draw(u, mean_or_t);
        } else {
          c.h[j] = bernoulli(u, mean_or_t);
        }
      }
    });
  };

  // This CTA's part of W'x (x = x0, or xk for a sample) into partials buffer `buffer`.
  const auto partial_sums = [&](bool sample, int buffer) {
    e.each_thread([&](Cta& c, int thread, int threads) {
      column_group_sums(c, sample ? c.xk : c.x0, H, thread, threads);
    });
    e.sync_cta();
    e.each_thread([&](Cta& c, int thread, int threads) {
      add_group_sums(c, H, e.partials_to_write(c, buffer), thread, threads);
    });
  };

  int buffer = 0;
  for (int64_t t = first; t < first + count; ++t) {
    const uint64_t stream = static_cast<uint64_t>(t);
    e.each_thread([&](Cta& c, int thread, int) {
      if (thread == 0) {
        const uint32_t word = philox_block(p.key, stream, train_index_phase(), 0).word[0];
        *c.image = index_from_bits(word, static_cast<uint32_t>(p.rows));
      }
    });
    e.sync_cta();
    e.each_thread([&](Cta& c, int thread, int threads) {
      const uint8_t* pixels = p.images + *c.image * d + c.first_row;
      for (int i = thread; i < c.n_rows; i += threads) c.x0[i] = pixels[i] != 0 ? 1.0f : 0.0f;
    });
    e.sync_cta();

    // Positive phase: ph0 = sigm(b + W'x0), and from it the first hidden draw, h of step 0.
    partial_sums(false, buffer);
    e.sync_cluster();
    combine_partials(buffer, true, stream, 0);
    buffer ^= 1;
    e.sync_cta();

    for (int step = 0; step < p.k; ++step) {
      // This CTA's visible units in two phases. Thread (g, i) of the row groups sums W_ij h_j
      // over j = g, g + groups, ... (h in {0, 1} or {-1, 0, 1}, so each product is exact; four
      // running sums for the latency); then thread i adds the groups' sums in group order, a_i,
      // and draws x_i from the sigmoid.
      e.each_thread([&](Cta& c, int thread, int threads) {
        const int G = c.row_groups;
        for (int q = thread; q < G * c.R; q += threads) {
          const int i = q % c.R, group = q / c.R;
          if (i >= c.n_rows) continue;
          const float* row = c.W + i * c.stride;
          float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
          int j = group;
          for (; j + 3 * G < H; j += 4 * G) {
            s0 += row[j] * c.h[j];
            s1 += row[j + G] * c.h[j + G];
            s2 += row[j + 2 * G] * c.h[j + 2 * G];
            s3 += row[j + 3 * G] * c.h[j + 3 * G];
          }
          for (; j < H; j += G) s0 += row[j] * c.h[j];
          c.row_sums[group * c.R + i] = (s0 + s1) + (s2 + s3);
        }
      });
      e.sync_cta();
      e.each_thread([&](Cta& c, int thread, int threads) {
        for (int i = thread; i < c.n_rows; i += threads) {
          float pre = 0.0f;
          for (int g = 0; g < c.row_groups; ++g) pre += c.row_sums[g * c.R + i];
          const float prob = sigmoid(pre + c.a[i]);
          c.xk[i] =
              bernoulli(uniform(p.key, stream, train_visible_phase(step), c.first_row + i), prob);
        }
      });
      e.sync_cta();
      // phk = sigm(b + W'xk), and from it h of the next step; none after the last step, whose
      // probabilities phk enter the update.
      partial_sums(true, buffer);
      e.sync_cluster();
      combine_partials(buffer, false, stream, step + 1 < p.k ? step + 1 : -1);
      buffer ^= 1;
      e.sync_cta();
    }

    // SGD on the CD-k gradient, in the CPU reference's order of roundings (add_rn above): W_i +=
    // lr ph0 where x0_i = 1, then W_i += -(lr phk) where xk_i = 1; b += lr (ph0 - phk);
    // a += lr (x0 - xk).
    // Threads in groups of H: thread (g, j) updates column j of rows g, g + groups, ...
    e.each_thread([&](Cta& c, int thread, int threads) {
      const float lr = p.lr;
      const int groups = c.groups;
      for (int q = thread; q < groups * H; q += threads) {
        const int j = q % H, group = q / H;
        float m0 = c.ph0[j], mk = c.phk[j];
        if constexpr (kType == HiddenType::ternary) {
          m0 = ternary_mean(m0);
          mk = ternary_mean(mk);
        }
        const float up = mul_rn(lr, m0), down = -mul_rn(lr, mk);
        for (int i = group; i < c.n_rows; i += groups) {
          float& w = c.W[i * c.stride + j];
          if (c.x0[i] != 0.0f) w = add_rn(w, up);
          if (c.xk[i] != 0.0f) w = add_rn(w, down);
        }
        if (group == 0) c.b[j] = fma_rn(lr, m0 - mk, c.b[j]);
      }
      if (has_a) {
        for (int i = thread; i < c.n_rows; i += threads) {
          if (c.x0[i] != 0.0f) c.a[i] = add_rn(c.a[i], lr);
          if (c.xk[i] != 0.0f) c.a[i] = add_rn(c.a[i], -lr);
        }
      }
    });
    e.sync_cta();
  }

  e.each_thread([&](Cta& c, int thread, int threads) {
    for (int i = 0; i < c.n_rows; ++i) {
      for (int j = thread; j < H; j += threads) {
        p.W[static_cast<int64_t>(c.first_row + i) * H + j] = c.W[i * c.stride + j];
      }
    }
    if (c.rank == 0) {
      for (int j = thread; j < H; j += threads) p.b[j] = c.b[j];
    }
    if (has_a) {
      for (int i = thread; i < c.n_rows; i += threads) p.a[c.first_row + i] = c.a[i];
    }
  });
  // No CTA may exit while another can still read its shared memory.
  e.sync_cluster();
}

}  // namespace rbm::fused
