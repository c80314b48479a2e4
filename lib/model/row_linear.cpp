#include "model/row_linear.h"

#include <algorithm>
#include <cstring>

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

constexpr int kLanes = 16;
constexpr int kMaxBlock = 4;  // rows of x sharing one pass over a weight row

// Generic: the same lane structure and reduction tree as the AVX2 path, in scalar code.
template <int NB>
void dots_generic(const float* w, const float* const* x, int64_t K, float* out) {
  float acc[NB][kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    for (int b = 0; b < NB; ++b) {
      for (int j = 0; j < kLanes; ++j) acc[b][j] = acc[b][j] + w[k + j] * x[b][k + j];
    }
  }
  for (int b = 0; b < NB; ++b) {
    float s8[8], s4[4];
    for (int j = 0; j < 8; ++j) s8[j] = acc[b][j] + acc[b][j + 8];
    for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
    float r = (s4[0] + s4[2]) + (s4[1] + s4[3]);
    for (int64_t t = k; t < K; ++t) r = r + w[t] * x[b][t];
    out[b] = r;
  }
}

#if KVSCOPE_HAVE_AVX2_KERNEL
template <int NB>
__attribute__((target("avx2,fma"))) void dots_avx2(const float* w, const float* const* x, int64_t K, float* out) {
  __m256 lo[NB], hi[NB];
  for (int b = 0; b < NB; ++b) lo[b] = hi[b] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    const __m256 wl = _mm256_loadu_ps(w + k), wh = _mm256_loadu_ps(w + k + 8);
    for (int b = 0; b < NB; ++b) {
      lo[b] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x[b] + k), lo[b]);
      hi[b] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x[b] + k + 8), hi[b]);
    }
  }
  for (int b = 0; b < NB; ++b) {
    const __m256 s8 = _mm256_add_ps(lo[b], hi[b]);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));          // lanes 0+2, 1+3
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 0x55));  // (0+2) + (1+3)
    float r = _mm_cvtss_f32(s4);
    for (int64_t t = k; t < K; ++t) r = r + w[t] * x[b][t];
    out[b] = r;
  }
}

bool cpu_has_avx2_fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

using DotsFn = void (*)(const float*, const float* const*, int64_t, float*);

struct Kernels {
  DotsFn by_width[kMaxBlock + 1];
};

Kernels generic_kernels() { return {{nullptr, dots_generic<1>, dots_generic<2>, dots_generic<3>, dots_generic<4>}}; }

Kernels pick_kernels(RowKernelIsa isa) {
#if KVSCOPE_HAVE_AVX2_KERNEL
  if (isa == RowKernelIsa::Auto && cpu_has_avx2_fma())
    return {{nullptr, dots_avx2<1>, dots_avx2<2>, dots_avx2<3>, dots_avx2<4>}};
#endif
  (void)isa;
  return generic_kernels();
}

}  // namespace

const char* row_linear_isa() {
#if KVSCOPE_HAVE_AVX2_KERNEL
  if (cpu_has_avx2_fma()) return "avx2-fma";
#endif
  return "generic";
}

bool row_linear_supported(const at::Tensor& weight) {
  return weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.dim() == 2 && weight.is_contiguous();
}

at::Tensor row_linear(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& bias, RowKernelIsa isa) {
  if (!row_linear_supported(weight)) fail("row_linear: needs a contiguous float32 CPU weight");
  if (x_in.dim() != 2 || x_in.size(1) != weight.size(1)) fail("row_linear: x must be [rows, ", weight.size(1), "]");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t B = x.size(0), K = x.size(1), N = weight.size(0);
  at::Tensor y = at::empty({B, N}, x.options());
  const float* W = weight.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const float* bias_data = nullptr;
  if (bias.defined()) {
    if (bias.numel() != N || bias.scalar_type() != at::kFloat || !bias.is_contiguous()) fail("row_linear: bias must be float32 [", N, "]");
    bias_data = bias.data_ptr<float>();
  }
  const Kernels kernels = pick_kernels(isa);
  // Enough weight rows per slice that a slice outlasts the cost of handing it to a thread.
  const int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(K, 1));
  parallel_rows(N, grain, [&](int64_t begin, int64_t end) {
    const float* xs[kMaxBlock];
    float dots[kMaxBlock];
    for (int64_t n = begin; n < end; ++n) {
      const float* w = W + n * K;
      const float add = bias_data ? bias_data[n] : 0.0f;
      for (int64_t b0 = 0; b0 < B; b0 += kMaxBlock) {
        const int width = static_cast<int>(std::min<int64_t>(kMaxBlock, B - b0));
        for (int j = 0; j < width; ++j) xs[j] = X + (b0 + j) * K;
        kernels.by_width[width](w, xs, K, dots);
        for (int j = 0; j < width; ++j) Y[(b0 + j) * N + n] = bias_data ? dots[j] + add : dots[j];
      }
    }
  });
  return y;
}

}  // namespace kvscope
