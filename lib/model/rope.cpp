#include "model/rope.h"

#include <algorithm>
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
  table_size_ = std::min<int64_t>(std::max<int64_t>(config.max_position_embeddings, 1), 1 << 20);
  const at::Tensor angles = at::arange(table_size_, at::TensorOptions().dtype(at::kDouble).device(device)).unsqueeze(-1) * inv_freq_;
  cos_table_ = angles.cos().to(at::kFloat);
  sin_table_ = angles.sin().to(at::kFloat);
}

at::Tensor Rope::apply(const at::Tensor& x, const at::Tensor& positions) const {
  const int64_t half = x.size(-1) / 2;
  at::Tensor cos, sin;
  const bool in_table = positions.numel() > 0 && positions.min().item<int64_t>() >= 0 && positions.max().item<int64_t>() < table_size_;
  if (in_table) {
    // Same float64 angles, evaluated once at construction (float32 tables).
    const at::Tensor flat = positions.reshape({-1});
    std::vector<int64_t> shape = positions.sizes().vec();
    shape.push_back(half);
    cos = cos_table_.index_select(0, flat).view(shape).to(x.scalar_type());
    sin = sin_table_.index_select(0, flat).view(shape).to(x.scalar_type());
  } else {
    const at::Tensor angles = positions.to(at::kDouble).unsqueeze(-1) * inv_freq_;  // [..., T, half]
    cos = angles.cos().to(x.scalar_type());
    sin = angles.sin().to(x.scalar_type());
  }
  if (cos.dim() == 2) {
    cos = cos.unsqueeze(0);
    sin = sin.unsqueeze(0);
  }
  const at::Tensor x1 = x.narrow(-1, 0, half);
  const at::Tensor x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace kvscope
