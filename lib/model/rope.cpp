#include "model/rope.h"

#include <cmath>

namespace kvscope {

std::vector<double> rope_inverse_frequencies(const ModelConfig& c) {
  const RopeConfig& r = c.rope;
  const int64_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t j = 0; j < half; ++j) {
    double f = 1.0 / std::pow(r.theta, static_cast<double>(2 * j) / static_cast<double>(c.head_dim));
    if (r.scaling == RopeScaling::Linear) {
      f /= r.factor;
    } else if (r.scaling == RopeScaling::Llama3) {
      const double old_len = static_cast<double>(r.original_max_position);
      const double low_wavelen = old_len / r.low_freq_factor;
      const double high_wavelen = old_len / r.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1.0 - smooth) * f / r.factor + smooth * f;
      }
    }
    inv[j] = f;
  }
  return inv;
}

Rope::Rope(const ModelConfig& config, at::Device device) {
  std::vector<double> inv = rope_inverse_frequencies(config);
  inv_freq_ = at::tensor(inv, at::TensorOptions().dtype(at::kDouble)).to(device);
}

at::Tensor Rope::apply(const at::Tensor& x, const at::Tensor& positions) const {
  const int64_t half = x.size(-1) / 2;
  at::Tensor angles = positions.to(at::kDouble).unsqueeze(-1) * inv_freq_;  // [..., T, half]
  if (angles.dim() == 2) angles = angles.unsqueeze(0);
  const at::Tensor cos = angles.cos().to(x.scalar_type());
  const at::Tensor sin = angles.sin().to(x.scalar_type());
  const at::Tensor x1 = x.narrow(-1, 0, half);
  const at::Tensor x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace kvscope
