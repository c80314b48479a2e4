#include "model/decode_ops.h"

#include <cmath>
#include <limits>

// Compiled with -ffp-contract=off (lib/CMakeLists.txt): a fused multiply-add on one code
// path and not another would make the same row round differently.

namespace kvscope {

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
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void softmax_row(float* scores, int64_t n) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) top = scores[i] > top ? scores[i] : top;
  if (top == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) scores[i] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    scores[i] = std::exp(scores[i] - top);
    sum += scores[i];
  }
  const float scale = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) scores[i] *= scale;
}

void add_into(float* h, const float* delta, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += delta[i];
}

}  // namespace kvscope
