#pragma once
#include <ATen/ATen.h>

namespace kvscope {

// Everything one layer computed for the tokens of one forward call. Tensors are only valid
// during the callback; clone what you keep.
struct LayerActivations {
  int layer;
  const at::Tensor& positions;         // [T] original positions of the new tokens
  const at::Tensor& q;                 // [heads, T, head_dim], rotated
  const at::Tensor& k_pre_rope;        // [kv_heads, T, head_dim]
  const at::Tensor& k;                 // [kv_heads, T, head_dim], rotated at original positions
  const at::Tensor& v;                 // [kv_heads, T, head_dim]
  const at::Tensor* attention;         // [heads, T, S] fp32 over the cache; null unless wanted
  const at::Tensor& attention_output;  // [heads, T, head_dim], before o_proj
  const at::Tensor& key_positions;     // [S] or [kv_heads, S]: positions of the attended keys
};

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // Attention probabilities are T x S per head; they are handed out only when asked for.
  virtual bool wants_attention(int layer) const { (void)layer; return false; }
  virtual void on_layer(const LayerActivations& activations) = 0;
};

}  // namespace kvscope
