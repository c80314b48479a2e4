#include "model/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvscope {

std::vector<double> rope_inverse_frequencies(const ModelConfig& c) {
  const RopeConfig& r = c.rope;
  const int64_t half = c.head_dim / 2;
  const double dim = static_cast<double>(c.head_dim);
  // yarn's band of dimensions that blend interpolation into extrapolation, as transformers
  // computes it (_compute_yarn_parameters): the dimensions that turn beta_fast and beta_slow
  // times over the original context.
  double ramp_low = 0, ramp_high = 0;
  if (r.scaling == RopeScaling::Yarn) {
    const auto correction_dim = [&](double rotations) {
      return dim * std::log(static_cast<double>(r.original_max_position) / (rotations * 2.0 * M_PI)) / (2.0 * std::log(r.theta));
    };
    ramp_low = correction_dim(r.beta_fast);
    ramp_high = correction_dim(r.beta_slow);
    if (r.truncate) {
      ramp_low = std::floor(ramp_low);
      ramp_high = std::ceil(ramp_high);
    }
    ramp_low = std::max(ramp_low, 0.0);
    ramp_high = std::min(ramp_high, dim - 1);
    if (ramp_low == ramp_high) ramp_high += 0.001;
  }
  std::vector<double> inv(half);
  for (int64_t j = 0; j < half; ++j) {
    double f = 1.0 / std::pow(r.theta, static_cast<double>(2 * j) / dim);
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
    } else if (r.scaling == RopeScaling::Yarn) {
      const double ramp = std::clamp((static_cast<double>(j) - ramp_low) / (ramp_high - ramp_low), 0.0, 1.0);
      f = f / r.factor * ramp + f * (1.0 - ramp);
    }
    // Dynamic NTK scaling leaves the frequencies unchanged up to max_position_embeddings,
    // the only positions Rope accepts for it (see Rope::apply).
    inv[j] = f;
  }
  return inv;
}

Rope::Rope(const ModelConfig& config, at::Device device) {
  std::vector<double> inv = rope_inverse_frequencies(config);
  inv_freq_ = at::tensor(inv, at::TensorOptions().dtype(at::kDouble)).to(device);
  table_size_ = std::min<int64_t>(std::max<int64_t>(config.max_position_embeddings, 1), 1 << 20);
  const at::Tensor angles = at::arange(table_size_, at::TensorOptions().dtype(at::kDouble).device(device)).unsqueeze(-1) * inv_freq_;
  attention_factor_ = config.rope.attention_factor;
  cos_table_ = (angles.cos() * attention_factor_).to(at::kFloat);
  sin_table_ = (angles.sin() * attention_factor_).to(at::kFloat);
  if (config.rope.scaling == RopeScaling::Dynamic) dynamic_limit_ = config.max_position_embeddings;
}

namespace {

// One head's row rotated by one table row: the products and sums of rotate_with, in float.
void rotate_row(const float* a, const float* c, const float* s, int64_t half, float* o) {
  for (int64_t j = 0; j < half; ++j) {
    o[j] = a[j] * c[j] - a[j + half] * s[j];
    o[j + half] = a[j + half] * c[j] + a[j] * s[j];
  }
}

// The same products and sums as the tensor expression below, one element at a time (this
// file is compiled without multiply-add contraction, so results are bitwise equal). A decode
// step rotates one token per head: as a loop that costs one allocation instead of a dozen
// tensor operations. Returns an undefined tensor when a position lies outside the table.
at::Tensor rotate_from_table(const at::Tensor& x_in, const at::Tensor& positions_in, const at::Tensor& cos_table,
                             const at::Tensor& sin_table) {
  const at::Tensor x = x_in.contiguous();
  const at::Tensor positions = positions_in.contiguous();
  const int64_t heads = x.size(0), T = x.size(1), hd = x.size(2), half = hd / 2, rows = cos_table.size(0);
  const bool per_head = positions.dim() == 2;
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t i = 0; i < positions.numel(); ++i)
    if (pos[i] < 0 || pos[i] >= rows) return {};
  at::Tensor out = at::empty_like(x);
  const float* src = x.data_ptr<float>();
  const float* cos_rows = cos_table.data_ptr<float>();
  const float* sin_rows = sin_table.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = per_head ? pos[h * T + t] : pos[t];
      rotate_row(src + (h * T + t) * hd, cos_rows + p * half, sin_rows + p * half, half, dst + (h * T + t) * hd);
    }
  }
  return out;
}

// x rotated by per-position cos/sin ([T, half] shared by all heads, or [heads, T, half]).
at::Tensor rotate_with(const at::Tensor& x, at::Tensor cos, at::Tensor sin) {
  if (cos.dim() == 2) {
    cos = cos.unsqueeze(0);
    sin = sin.unsqueeze(0);
  }
  const int64_t half = x.size(-1) / 2;
  const at::Tensor x1 = x.narrow(-1, 0, half);
  const at::Tensor x2 = x.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

}  // namespace

at::Tensor Rope::apply_known(const at::Tensor& x, const at::Tensor& positions, int64_t max_position) const {
  if (x.device().is_cpu() || max_position < 0) return apply(x, positions);
  if (max_position < table_size_) return rotate_in_table(x, positions);
  refuse_beyond_dynamic_limit(max_position);
  return rotate_at_angles(x, positions);
}

at::Tensor Rope::apply(const at::Tensor& x, const at::Tensor& positions) const {
  if (x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 3 && x.size(-1) % 2 == 0 && !x.requires_grad() &&
      positions.device().is_cpu() && positions.scalar_type() == at::kLong && cos_table_.device().is_cpu() &&
      (positions.dim() == 1 || (positions.dim() == 2 && positions.size(0) == x.size(0))) && positions.size(-1) == x.size(1)) {
    at::Tensor rotated = rotate_from_table(x, positions, cos_table_, sin_table_);
    if (rotated.defined()) return rotated;
  }
  const bool in_table = positions.numel() > 0 && positions.min().item<int64_t>() >= 0 && positions.max().item<int64_t>() < table_size_;
  if (in_table) return rotate_in_table(x, positions);
  if (positions.numel() > 0) refuse_beyond_dynamic_limit(positions.max().item<int64_t>());
  return rotate_at_angles(x, positions);
}

void Rope::rotate_rows(const float* src, float* dst, int64_t heads, int64_t head_dim, int64_t position) const {
  const int64_t half = head_dim / 2;
  if (cos_table_.device().is_cpu() && cos_table_.scalar_type() == at::kFloat && position >= 0 && position < table_size_) {
    const float* c = cos_table_.data_ptr<float>() + position * half;
    const float* s = sin_table_.data_ptr<float>() + position * half;
    for (int64_t h = 0; h < heads; ++h) rotate_row(src + h * head_dim, c, s, half, dst + h * head_dim);
    return;
  }
  const at::Tensor x = at::from_blob(const_cast<float*>(src), {heads, 1, head_dim}, at::kFloat);
  at::from_blob(dst, {heads, 1, head_dim}, at::kFloat).copy_(apply(x, at::full({1}, position, at::kLong)));
}

at::Tensor Rope::rotate_in_table(const at::Tensor& x, const at::Tensor& positions) const {
  // Same float64 angles, evaluated once at construction (float32 tables).
  std::vector<int64_t> shape = positions.sizes().vec();
  shape.push_back(cos_table_.size(1));
  const at::Tensor flat = positions.reshape({-1});
  return rotate_with(x, cos_table_.index({flat}).view(shape).to(x.scalar_type()), sin_table_.index({flat}).view(shape).to(x.scalar_type()));
}

void Rope::refuse_beyond_dynamic_limit(int64_t max_position) const {
  // transformers recomputes dynamic-NTK frequencies from the longest position of each call,
  // so keys cached earlier were rotated with other frequencies than later ones; a cache of
  // rotated keys cannot reproduce that, so those positions are refused.
  if (dynamic_limit_ > 0 && max_position >= dynamic_limit_) {
    fail("rope_type 'dynamic': position ", max_position, " is beyond max_position_embeddings (", dynamic_limit_,
         "), where transformers re-derives the frequencies at every call; kvscope runs dynamic scaling only within it");
  }
}

at::Tensor Rope::rotate_at_angles(const at::Tensor& x, const at::Tensor& positions) const {
  const at::Tensor angles = positions.to(at::kDouble).unsqueeze(-1) * inv_freq_;  // [..., T, half]
  return rotate_with(x, (angles.cos() * attention_factor_).to(x.scalar_type()), (angles.sin() * attention_factor_).to(x.scalar_type()));
}

}  // namespace kvscope
