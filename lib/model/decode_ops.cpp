#include "model/decode_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

// Compiled with -ffp-contract=off (lib/CMakeLists.txt): a fused multiply-add on one code
// path and not another would make the same row round differently.

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvscope {
namespace {

// exp(x) for float32 in a few multiplies and adds (methods §1.1): x = n ln 2 + r with ln 2
// split in two so r is exact, a degree-6 polynomial for e^r on |r| <= ln2 / 2, then the
// exponent bits set to n. Within 2 ulp of the exact value. The scalar and the AVX2 forms
// perform the same float operations in the same order (no fused multiply-adds), so an
// element's value does not depend on whether it falls in a vector or the tail of a row.
constexpr float kLog2e = 1.44269504088896341f, kLn2High = 0.693359375f, kLn2Low = -2.12194440e-4f;
constexpr float kExpLow = -87.3365447505531f, kExpHigh = 88.3762626647949f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

float exp_scalar(float x) {
  if (std::isnan(x)) return x;
  if (x < kExpLow) return 0.0f;
  if (x > kExpHigh) return std::numeric_limits<float>::infinity();
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kLn2High) - n * kLn2Low;
  float y = kP0;
  y = y * r + kP1;
  y = y * r + kP2;
  y = y * r + kP3;
  y = y * r + kP4;
  y = y * r + kP5;
  y = (y * (r * r) + r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void exp_in_place_avx2(float* v, int64_t n) {
  const __m256 log2e = _mm256_set1_ps(kLog2e), ln2_high = _mm256_set1_ps(kLn2High), ln2_low = _mm256_set1_ps(kLn2Low);
  const __m256 low = _mm256_set1_ps(kExpLow), high = _mm256_set1_ps(kExpHigh), one = _mm256_set1_ps(1.0f);
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, low), high);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(k, ln2_high)), _mm256_mul_ps(k, ln2_low));
    __m256 y = _mm256_set1_ps(kP0);
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(kP1));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(kP2));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(kP3));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(kP4));
    y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(kP5));
    y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(y, _mm256_mul_ps(r, r)), r), one);
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
    e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, low, _CMP_LT_OQ));
    e = _mm256_blendv_ps(e, inf, _mm256_cmp_ps(x, high, _CMP_GT_OQ));
    e = _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN stays NaN
    _mm256_storeu_ps(v + i, e);
  }
  for (; i < n; ++i) v[i] = exp_scalar(v[i]);
}
#endif

}  // namespace

void exp_in_place(float* v, int64_t n) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) {
    exp_in_place_avx2(v, n);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) v[i] = exp_scalar(v[i]);
}

void rms_norm_rows(const float* x, int64_t rows, int64_t dim, const float* weight, double eps, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * dim;
    float* out = y + r * dim;
    double sum = 0.0;
    for (int64_t d = 0; d < dim; ++d) sum += static_cast<double>(in[d]) * in[d];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(dim) + eps));
    for (int64_t d = 0; d < dim; ++d) out[d] = (in[d] * inv) * weight[d];
  }
}

void silu_times(float* gate, const float* up, int64_t n) {
  constexpr int64_t kChunk = 256;
  float e[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t len = std::min(kChunk, n - i0);
    for (int64_t j = 0; j < len; ++j) e[j] = -gate[i0 + j];
    exp_in_place(e, len);
    for (int64_t j = 0; j < len; ++j) gate[i0 + j] = gate[i0 + j] / (1.0f + e[j]) * up[i0 + j];
  }
}

void softmax_row(float* scores, int64_t n) {
  // The maximum is exact in any order; partial maxima let the loop vectorise.
  constexpr int kWays = 8;
  float tops[kWays];
  for (float& t : tops) t = -std::numeric_limits<float>::infinity();
  int64_t m = 0;
  for (; m + kWays <= n; m += kWays)
    for (int j = 0; j < kWays; ++j) tops[j] = std::max(tops[j], scores[m + j]);
  for (; m < n; ++m) tops[0] = std::max(tops[0], scores[m]);
  float top = tops[0];
  for (int j = 1; j < kWays; ++j) top = std::max(top, tops[j]);
  if (top == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) scores[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  for (int64_t i = 0; i < n; ++i) scores[i] -= top;
  exp_in_place(scores, n);
  // Four interleaved float64 sums (term i goes to i mod 4), then ((0 + 1) + (2 + 3)): one
  // fixed order, without a chain of n dependent additions.
  double sums[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) sums[j] += scores[i + j];
  for (int j = 0; i < n; ++i, ++j) sums[j] += scores[i];
  const float scale = static_cast<float>(1.0 / ((sums[0] + sums[1]) + (sums[2] + sums[3])));
  for (int64_t k = 0; k < n; ++k) scores[k] *= scale;
}

void add_into(float* h, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += delta[i];
}

}  // namespace kvscope
