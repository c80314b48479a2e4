#pragma once
#include <ATen/ATen.h>

#include "model/config.h"

namespace kvscope {

// Rotary position embedding in the Hugging Face rotate_half layout: dims (j, j + d/2) of a
// head rotate together. Angles are computed in float64 so long positions stay exact.
class Rope {
 public:
  // Precomputes cos/sin for positions [0, max_position_embeddings): a cached key is then
  // rotated by gathering table rows instead of evaluating trig functions every step.
  Rope(const ModelConfig& config, at::Device device);

  // x: [heads, T, head_dim]; positions: [T] (shared by all heads) or [heads, T] (int64).
  at::Tensor apply(const at::Tensor& x, const at::Tensor& positions) const;
  // The same rotation for positions the caller knows lie in [0, max_position]: it reads no
  // position on the host, so a GPU need not stop for it. A negative max_position (unknown)
  // is apply().
  at::Tensor apply_known(const at::Tensor& x, const at::Tensor& positions, int64_t max_position) const;
  // `heads` rows of head_dim float32s on the host, all at `position`, rotated from src into
  // dst (which may not overlap src): the numbers apply() gives, without tensors for the
  // positions in the table.
  void rotate_rows(const float* src, float* dst, int64_t heads, int64_t head_dim, int64_t position) const;
  // The scaled inverse frequencies (float64, [head_dim / 2]).
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  // x rotated by the table rows at `positions` (all in [0, table_size_)).
  at::Tensor rotate_in_table(const at::Tensor& x, const at::Tensor& positions) const;
  void refuse_beyond_dynamic_limit(int64_t max_position) const;
  // Positions past the table: angles evaluated for the call.
  at::Tensor rotate_at_angles(const at::Tensor& x, const at::Tensor& positions) const;

  at::Tensor inv_freq_;
  at::Tensor cos_table_, sin_table_;  // [positions, head_dim / 2], float32
  int64_t table_size_ = 0;
  double attention_factor_ = 1.0;
  int64_t dynamic_limit_ = 0;  // positions from here on are refused (dynamic NTK scaling)
};

// Inverse frequencies for a config, with its scaling applied (host-side doubles).
std::vector<double> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace kvscope
