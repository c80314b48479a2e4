#include "model/row_linear.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/worker_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define KVSCOPE_HAVE_AVX2_KERNEL 1
#endif

// This file is compiled with -ffp-contract=off (see lib/CMakeLists.txt): a compiler that
// fused some multiply-adds and not others would give different results for the same row
// depending on which code path (block width) computed it.

namespace kvscope {
namespace {

constexpr int kLanes = 8;
constexpr int kMaxRows = 6;      // weight rows sharing one pass over the x rows
constexpr int kMaxBlock = 8;     // x rows sharing one pass over the weight rows
constexpr int kShortRows = 3;    // short weight rows share x loads three at a time...
constexpr int kSharedBlock = 4;  // ... over 4 x rows (12 accumulators fit 16 registers)
constexpr int kMaxTile = 24;     // accumulators of the widest tile, with 32 vector registers
constexpr int64_t kStreamMinK = 256;  // weight rows at least this long stream one at a time
constexpr int64_t kChunkBytes = 128 * 1024;  // weight rows taken against every x block in turn
constexpr int64_t kBlockBytes = 24 * 1024;   // x rows of one block, kept in a 32 KB L1 with a weight row

// Every dot product w.x is 8 interleaved partial sums over k (lane j takes k = j mod 8),
// reduced as ((0+4) + (2+6)) + ((1+5) + (3+7)), then the k % 8 tail added in order.
// Blocking NR weight rows by NB x rows only shares loads: each (row, x) pair sees the same
// operations in the same order whatever NR and NB are.

// Cache lines of the next chunk of weights to fetch into L2 while a tile runs. A hint only:
// which lines arrive early changes no result.
struct L2Prefetch {
  const char* next = nullptr;
  const char* end = nullptr;
  void all() const {
    for (const char* line = next; line < end; line += 64) __builtin_prefetch(line, 0, 2);
  }
};

// Generic: the same lanes and reduction tree as the AVX2 path, in scalar code.
template <int NR, int NB>
void dots_generic(const float* const* w, const float* const* x, int64_t K, float (*out)[kMaxBlock], L2Prefetch prefetch) {
  prefetch.all();
  float acc[NR][NB][kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    for (int r = 0; r < NR; ++r)
      for (int b = 0; b < NB; ++b)
        for (int j = 0; j < kLanes; ++j) acc[r][b][j] = acc[r][b][j] + w[r][k + j] * x[b][k + j];
  }
  for (int r = 0; r < NR; ++r) {
    for (int b = 0; b < NB; ++b) {
      float s4[4];
      for (int j = 0; j < 4; ++j) s4[j] = acc[r][b][j] + acc[r][b][j + 4];
      float v = (s4[0] + s4[2]) + (s4[1] + s4[3]);
      for (int64_t t = k; t < K; ++t) v = v + w[r][t] * x[b][t];
      out[r][b] = v;
    }
  }
}

#if KVSCOPE_HAVE_AVX2_KERNEL
// AVX-512: 16 interleaved partial sums (lane j takes k = j mod 16), folded j + (j+8) and then
// reduced by the AVX2 tree; the k % 16 tail is added in order. Each (row, x) pair again sees
// the same operations whatever the blocking.
// GCC 12's own AVX-512 cast intrinsics read a deliberately undefined register and warn about it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <int NR, int NB>
__attribute__((target("avx512f,avx2,fma"))) void dots_avx512(const float* const* w, const float* const* x, int64_t K,
                                                              float (*out)[kMaxBlock], L2Prefetch prefetch) {
  prefetch.all();
  constexpr int kWide = 16;
  __m512 acc[NR][NB];
  for (int r = 0; r < NR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + kWide <= K; k += kWide) {
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_loadu_ps(w[r] + k);
    for (int b = 0; b < NB; ++b) {
      const __m512 xv = _mm512_loadu_ps(x[b] + k);
      for (int r = 0; r < NR; ++r) acc[r][b] = _mm512_fmadd_ps(wv[r], xv, acc[r][b]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int b = 0; b < NB; ++b) {
      const __m512 high = _mm512_shuffle_f32x4(acc[r][b], acc[r][b], 0xEE);  // lanes 8..15 moved down
      const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc[r][b]), _mm512_castps512_ps256(high));  // j + (j+8)
      __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));                             // j + (j+4)
      s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
      s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 0x55));
      float v = _mm_cvtss_f32(s4);
      for (int64_t t = k; t < K; ++t) v = v + w[r][t] * x[b][t];
      out[r][b] = v;
    }
  }
}
#pragma GCC diagnostic pop

// The body of the AVX2 kernel, for two register files: the 16 of AVX2 and the 32 that
// AVX-512VL gives the same 256-bit instructions. Each (row, x) pair is one 8-lane chain of
// fused multiply-adds in order of k either way, so both give the same bits; the larger file
// only lets more pairs share each load (dots_avx2_wide). The next chunk's lines are fetched
// a few per step of k rather than all at once: a burst of a 3-row tile's 96 misses stalled on
// the core's miss buffers (5% of batch-16 sweep time on the prefetch instruction).
#define KVSCOPE_DOTS_AVX2_BODY                                                               \
  __m256 acc[NR][NB];                                                                        \
  for (int r = 0; r < NR; ++r)                                                               \
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_ps();                            \
  const int64_t lines_per_step = (prefetch.end - prefetch.next + 64 * (K / kLanes) - 1) / std::max<int64_t>(64 * (K / kLanes), 1); \
  int64_t k = 0;                                                                             \
  for (; k + kLanes <= K; k += kLanes) {                                                     \
    for (int64_t i = 0; i < lines_per_step && prefetch.next < prefetch.end; ++i, prefetch.next += 64) \
      __builtin_prefetch(prefetch.next, 0, 2);                                               \
    if constexpr (NR > NB) { /* tall tiles hold the x vectors and stream the weight rows */  \
      __m256 xv[NB];                                                                         \
      for (int b = 0; b < NB; ++b) xv[b] = _mm256_loadu_ps(x[b] + k);                        \
      for (int r = 0; r < NR; ++r) {                                                         \
        const __m256 wv = _mm256_loadu_ps(w[r] + k);                                         \
        for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_fmadd_ps(wv, xv[b], acc[r][b]);      \
      }                                                                                      \
    } else {                                                                                 \
      __m256 wv[NR];                                                                         \
      for (int r = 0; r < NR; ++r) wv[r] = _mm256_loadu_ps(w[r] + k);                        \
      for (int b = 0; b < NB; ++b) {                                                         \
        const __m256 xv = _mm256_loadu_ps(x[b] + k);                                         \
        for (int r = 0; r < NR; ++r) acc[r][b] = _mm256_fmadd_ps(wv[r], xv, acc[r][b]);     \
      }                                                                                      \
    }                                                                                        \
  }                                                                                          \
  prefetch.all();                                                                            \
  reduce_avx2_tile<NR, NB>(acc, w, x, k, K, out);

template <int NR, int NB>
__attribute__((target("avx2,fma"), always_inline)) inline void reduce_avx2_tile(__m256 (&acc)[NR][NB], const float* const* w,
                                                                                const float* const* x, int64_t k, int64_t K,
                                                                                float (*out)[kMaxBlock]) {
  for (int r = 0; r < NR; ++r) {
    for (int b = 0; b < NB; ++b) {
      __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc[r][b]), _mm256_extractf128_ps(acc[r][b], 1));  // j + (j+4)
      s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));                                                      // (0+2), (1+3)
      s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 0x55));
      float v = _mm_cvtss_f32(s4);
      for (int64_t t = k; t < K; ++t) v = v + w[r][t] * x[b][t];
      out[r][b] = v;
    }
  }
}

template <int NR, int NB>
__attribute__((target("avx2,fma"))) void dots_avx2(const float* const* w, const float* const* x, int64_t K, float (*out)[kMaxBlock],
                                                    L2Prefetch prefetch) {
  KVSCOPE_DOTS_AVX2_BODY
}

template <int NR, int NB>
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void dots_avx2_wide(const float* const* w, const float* const* x, int64_t K,
                                                                      float (*out)[kMaxBlock], L2Prefetch prefetch) {
  KVSCOPE_DOTS_AVX2_BODY
}
#undef KVSCOPE_DOTS_AVX2_BODY

#endif

// Avx2Wide: AVX2's instructions and numbers with AVX-512VL's 32 registers (see
// KVSCOPE_DOTS_AVX2_BODY).
enum class Resolved { Generic, Avx2, Avx2Wide, Avx512 };

bool cpu_has(Resolved isa) {
#if KVSCOPE_HAVE_AVX2_KERNEL
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  static const bool avx512vl = avx512 && __builtin_cpu_supports("avx512vl");
  return isa == Resolved::Generic || (isa == Resolved::Avx2 && avx2) || (isa == Resolved::Avx2Wide && avx512vl) ||
         (isa == Resolved::Avx512 && avx512);
#else
  return isa == Resolved::Generic;
#endif
}

Resolved available_or_fail(Resolved isa, const char* name) {
  if (!cpu_has(isa)) fail("row kernels: ", name, " is not available (", row_linear_isa_names(), ")");
  return isa;
}

// Auto: AVX2 with FMA where the CPU has it (with AVX-512VL's 32 registers where it has those
// too: the same numbers, larger tiles), unless KVSCOPE_ROW_KERNELS names another. AVX-512
// (16 lanes, other numbers) is not the default: on the 2-core AVX-512 machine this project
// is measured on it was no faster for one row (memory-bound: 2.70-2.98 ms against 2.83-2.88 ms for a 32000 x 512
// layer) and slower for 64 (19.6 against 17.1 ms), so it is an explicit choice.
Resolved resolve(RowKernelIsa isa) {
  switch (isa) {
    case RowKernelIsa::Generic: return Resolved::Generic;
    case RowKernelIsa::Avx2Wide: return available_or_fail(Resolved::Avx2Wide, "avx2-wide");
    case RowKernelIsa::Avx2: return available_or_fail(Resolved::Avx2, "avx2");
    case RowKernelIsa::Avx512: return available_or_fail(Resolved::Avx512, "avx512");
    case RowKernelIsa::Auto: break;
  }
  static const Resolved automatic = [] {
    const char* env = std::getenv("KVSCOPE_ROW_KERNELS");
    const std::string wanted = env ? env : "";
    if (wanted == "generic") return Resolved::Generic;
    if (wanted == "avx2-wide") return available_or_fail(Resolved::Avx2Wide, "KVSCOPE_ROW_KERNELS=avx2-wide");
    if (wanted == "avx2") return available_or_fail(Resolved::Avx2, "KVSCOPE_ROW_KERNELS=avx2");
    if (wanted == "avx512") return available_or_fail(Resolved::Avx512, "KVSCOPE_ROW_KERNELS=avx512");
    if (!wanted.empty()) fail("KVSCOPE_ROW_KERNELS='", wanted, "': expected avx512, avx2-wide, avx2 or generic (or unset for the default)");
    return cpu_has(Resolved::Avx2Wide) ? Resolved::Avx2Wide : cpu_has(Resolved::Avx2) ? Resolved::Avx2 : Resolved::Generic;
  }();
  return automatic;
}

// out[d] = sum_s p[s] * m[s, d], in order of s.
void weighted_sum_generic(const float* p, const float* m, int64_t S, int64_t D, float* out) {
  for (int64_t d = 0; d < D; ++d) out[d] = 0.0f;
  for (int64_t s = 0; s < S; ++s) {
    const float ps = p[s];
    const float* row = m + s * D;
    for (int64_t d = 0; d < D; ++d) out[d] = out[d] + ps * row[d];
  }
}

#if KVSCOPE_HAVE_AVX2_KERNEL
__attribute__((target("avx2,fma"))) void weighted_sum_avx2(const float* p, const float* m, int64_t S, int64_t D, float* out) {
  int64_t d0 = 0;
  // 64 columns at a time keep eight accumulators in registers across the whole sum.
  for (; d0 + 64 <= D; d0 += 64) {
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    for (int64_t s = 0; s < S; ++s) {
      const __m256 ps = _mm256_set1_ps(p[s]);
      const float* row = m + s * D + d0;
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(ps, _mm256_loadu_ps(row + 8 * j), acc[j]);
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(out + d0 + 8 * j, acc[j]);
  }
  for (; d0 + 8 <= D; d0 += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t s = 0; s < S; ++s) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[s]), _mm256_loadu_ps(m + s * D + d0), acc);
    _mm256_storeu_ps(out + d0, acc);
  }
  for (; d0 < D; ++d0) {
    float acc = 0.0f;
    for (int64_t s = 0; s < S; ++s) acc = std::fma(p[s], m[s * D + d0], acc);
    out[d0] = acc;
  }
}
#endif

using DotsFn = void (*)(const float* const*, const float* const*, int64_t, float (*)[kMaxBlock], L2Prefetch);

struct Kernels {
  DotsFn by_shape[kMaxRows + 1][kMaxBlock + 1];
  // Weight rows per tile when a chunk of weights meets a block of `width` x rows from L2: as
  // many as keep the tile's accumulators, its x or weight vectors and one operand in the
  // register file (3 x 8 or 6 x 4 with 32 registers; 16 hold only one weight row's eight).
  bool wide_registers;
  int chunk_tile_rows(int width) const { return wide_registers ? std::min(kMaxRows, kMaxTile / width) : 1; }
};

// Shapes that run: up to 3 weight rows against 1..8 x rows, 4..6 against 1..4.
template <template <int, int> class Pick, int NR>
void fill_row(Kernels& table) {
  table.by_shape[NR][1] = Pick<NR, 1>::fn;
  table.by_shape[NR][2] = Pick<NR, 2>::fn;
  table.by_shape[NR][3] = Pick<NR, 3>::fn;
  table.by_shape[NR][4] = Pick<NR, 4>::fn;
  if constexpr (NR <= 3) {
    table.by_shape[NR][5] = Pick<NR, 5>::fn;
    table.by_shape[NR][6] = Pick<NR, 6>::fn;
    table.by_shape[NR][7] = Pick<NR, 7>::fn;
    table.by_shape[NR][8] = Pick<NR, 8>::fn;
  }
}

template <template <int, int> class Pick>
Kernels kernel_table(bool wide_registers) {
  Kernels table{};
  fill_row<Pick, 1>(table);
  fill_row<Pick, 2>(table);
  fill_row<Pick, 3>(table);
  if (wide_registers) {
    fill_row<Pick, 4>(table);
    fill_row<Pick, 5>(table);
    fill_row<Pick, 6>(table);
  }
  table.wide_registers = wide_registers;
  return table;
}

template <int NR, int NB>
struct PickGeneric {
  static constexpr DotsFn fn = dots_generic<NR, NB>;
};
#if KVSCOPE_HAVE_AVX2_KERNEL
template <int NR, int NB>
struct PickAvx2 {
  static constexpr DotsFn fn = dots_avx2<NR, NB>;
};
template <int NR, int NB>
struct PickAvx2Wide {
  static constexpr DotsFn fn = dots_avx2_wide<NR, NB>;
};
template <int NR, int NB>
struct PickAvx512 {
  static constexpr DotsFn fn = dots_avx512<NR, NB>;
};
#endif

// Built once per instruction set: decode asks for a table dozens of times per token.
const Kernels& pick_kernels(RowKernelIsa isa) {
  switch (resolve(isa)) {
#if KVSCOPE_HAVE_AVX2_KERNEL
    case Resolved::Avx512: {
      static const Kernels table = kernel_table<PickAvx512>(true);
      return table;
    }
    case Resolved::Avx2Wide: {
      static const Kernels table = kernel_table<PickAvx2Wide>(true);
      return table;
    }
    case Resolved::Avx2: {
      static const Kernels table = kernel_table<PickAvx2>(false);
      return table;
    }
#endif
    default: {
      static const Kernels table = kernel_table<PickGeneric>(false);
      return table;
    }
  }
}

}  // namespace

void weighted_row_sum_raw(const float* p, int64_t G, int64_t S, const float* m, int64_t D, float* out, RowKernelIsa isa) {
  auto fn = weighted_sum_generic;
#if KVSCOPE_HAVE_AVX2_KERNEL
  // The AVX-512 paths share the AVX2 kernel: one fused multiply-add per column in order of s
  // gives the same numbers at either width, and the value rows are too short to gain.
  if (resolve(isa) != Resolved::Generic) fn = weighted_sum_avx2;
#else
  (void)isa;
#endif
  for (int64_t g = 0; g < G; ++g) fn(p + g * S, m, S, D, out + g * D);
}

const char* row_linear_isa() {
  switch (resolve(RowKernelIsa::Auto)) {
    case Resolved::Avx512: return "avx512";
    case Resolved::Avx2Wide: return "avx2-fma, 32 registers";
    case Resolved::Avx2: return "avx2-fma";
    default: return "generic";
  }
}

std::string row_linear_isa_names() {
  std::string names = "this CPU has";
  if (cpu_has(Resolved::Avx512)) names += " avx512,";
  if (cpu_has(Resolved::Avx2Wide)) names += " avx2-wide,";
  if (cpu_has(Resolved::Avx2)) names += " avx2,";
  return names + " generic";
}

bool row_kernels_available(RowKernelIsa isa) {
  switch (isa) {
    case RowKernelIsa::Avx2: return cpu_has(Resolved::Avx2);
    case RowKernelIsa::Avx2Wide: return cpu_has(Resolved::Avx2Wide);
    case RowKernelIsa::Avx512: return cpu_has(Resolved::Avx512);
    default: return true;
  }
}

bool row_linear_supported(const at::Tensor& weight) {
  return weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.dim() == 2 && weight.is_contiguous();
}

void row_linear_parts_raw(const float* X, int64_t B, int64_t K, const RowLinearPart* parts, int count, RowKernelIsa isa) {
  const Kernels& kernels = pick_kernels(isa);
  int64_t total = 0;
  for (int p = 0; p < count; ++p) total += parts[p].n;
  // Enough weight rows per slice that a slice outlasts the cost of handing it to a thread.
  const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(K, 1));
  // Long weight rows stream one at a time, each against up to 8 x rows: reading the weights
  // is what bounds a pass, and the hardware prefetcher follows one sequential stream far
  // better than three rows K floats apart that each end before it has ramped up (one row at
  // a time measured 1.5-1.7x faster for 32000 x 512 at 1 to 8 rows and took 30M decode from
  // 137 to 204-235 tok/s). Short rows (attention's head_dim, tiny models) share the x loads
  // between three weight rows. Either way each element's sum is the same.
  const bool streams = K >= kStreamMinK;
  // A block's x rows stay in L1 beside the weight rows: 8 rows of 512 floats do, 8 rows of
  // 1376 (an MLP's down projection) did not and ran from L2 at 60% of the speed (16 x 512 x
  // 1376: 241 us against 147 for the same work as 1376 x 512).
  const int64_t x_block = streams ? std::clamp<int64_t>(kBlockBytes / (K * 4), 2, kMaxBlock) : kSharedBlock;
  // With more x rows than one block holds, a chunk of weight rows that fits in L2 is taken
  // against every block in turn, so the block's x rows stay in L1 and the weights still come
  // from memory once (16 x rows of 512 against every weight row in turn had run from L2 at a
  // third of the speed of 8). While the first block runs, the next chunk is prefetched into
  // L2, so the weights' trip from memory overlaps arithmetic instead of stalling it. From L2,
  // several weight rows can share each x load: with 32 registers, 3 x 8 or 6 x 4 tiles. Both
  // measured in README "Performance" (batch-16 sweeps).
  const bool chunked = B > x_block;
  const int tile_rows = !streams ? kShortRows : chunked ? kernels.chunk_tile_rows(static_cast<int>(x_block)) : 1;
  parallel_pieces(total, grain, [&](int64_t begin, int64_t end) {
    const float* ws[kMaxRows];
    const float* xs[kMaxBlock];
    float dots[kMaxRows][kMaxBlock];
    // The slice [begin, end) of the parts laid end to end, one part at a time.
    int64_t first = 0;
    for (int p = 0; p < count && first < end; first += parts[p].n, ++p) {
      const RowLinearPart& part = parts[p];
      const int64_t lo = std::max(begin, first) - first, hi = std::min(end, first + part.n) - first;
      const int64_t chunk = chunked ? std::max<int64_t>(tile_rows, kChunkBytes / (K * 4) / tile_rows * tile_rows) : hi - lo;
      for (int64_t c0 = lo; c0 < hi; c0 += chunk) {
        const int64_t c1 = std::min(hi, c0 + chunk);
        for (int64_t b0 = 0; b0 < B; b0 += x_block) {
          const int width = static_cast<int>(std::min<int64_t>(x_block, B - b0));
          for (int j = 0; j < width; ++j) xs[j] = X + (b0 + j) * K;
          for (int64_t n0 = c0; n0 < c1; n0 += tile_rows) {
            const int rows = static_cast<int>(std::min<int64_t>(tile_rows, c1 - n0));
            L2Prefetch next_chunk;
            if (chunked && b0 == 0) {
              next_chunk.next = reinterpret_cast<const char*>(part.w + std::min(hi, n0 + chunk) * K);
              next_chunk.end = reinterpret_cast<const char*>(part.w + std::min(hi, n0 + chunk + rows) * K);
            }
            for (int r = 0; r < rows; ++r) ws[r] = part.w + (n0 + r) * K;
            kernels.by_shape[rows][width](ws, xs, K, dots, next_chunk);
            for (int r = 0; r < rows; ++r)
              for (int j = 0; j < width; ++j)
                part.y[(b0 + j) * part.n + n0 + r] = part.bias ? dots[r][j] + part.bias[n0 + r] : dots[r][j];
          }
        }
      }
    }
  });
}

void row_linear_raw(const float* X, int64_t B, const float* W, int64_t N, int64_t K, const float* bias_data, float* Y, RowKernelIsa isa) {
  const RowLinearPart part{W, N, bias_data, Y};
  row_linear_parts_raw(X, B, K, &part, 1, isa);
}

at::Tensor row_linear(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias, RowKernelIsa isa) {
  if (!row_linear_supported(weight)) fail("row_linear: needs a contiguous float32 CPU weight");
  if (x_in.dim() != 2 || x_in.size(1) != weight.size(1)) fail("row_linear: x must be [rows, ", weight.size(1), "]");
  // Decode calls this dozens of times per token: skip the no-op conversions' dispatch.
  const at::Tensor x = x_in.scalar_type() == at::kFloat && x_in.is_contiguous() ? x_in : x_in.to(at::kFloat).contiguous();
  const int64_t B = x.size(0), K = x.size(1), N = weight.size(0);
  at::Tensor y = at::empty({B, N}, x.options());
  const float* bias_data = nullptr;
  if (bias.defined()) {
    if (bias.numel() != N || bias.scalar_type() != at::kFloat || !bias.is_contiguous()) fail("row_linear: bias must be float32 [", N, "]");
    bias_data = bias.data_ptr<float>();
  }
  row_linear_raw(x.data_ptr<float>(), B, weight.data_ptr<float>(), N, K, bias_data, y.data_ptr<float>(), isa);
  return y;
}

}  // namespace kvscope
