#pragma once
// The KV cache is owned by the caller and passed to every forward call, so one model can
// drive several caches side by side. The forward pass only appends and reads; what a cache
// keeps, and at which positions its keys are rotated, is the cache's business.
#include <ATen/ATen.h>

#include <memory>
#include <vector>

namespace kvscope {

// The new tokens of one layer, as the forward pass produced them. The tensors may be views of
// the forward pass's working rows, valid only during the call: a cache copies what it keeps.
struct NewEntries {
  const at::Tensor& k_pre_rope;  // [kv_heads, T, head_dim]
  const at::Tensor& k;           // [kv_heads, T, head_dim], rotated at `positions`
  const at::Tensor& v;           // [kv_heads, T, head_dim]
  const at::Tensor& positions;   // [T] int64 original positions
  // The last of `positions` as the caller knows it on the host, or -1: a cache passes it on
  // so that rotating the queries needs no read of a device tensor.
  int64_t last_position = -1;
};

// What attention reads after an append: every entry the new queries may attend to.
struct AttentionInputs {
  at::Tensor keys;             // [kv_heads, S, head_dim], already rotated
  at::Tensor values;           // [kv_heads, S, head_dim]
  at::Tensor key_positions;    // [S] or [kv_heads, S]: positions used for the causal mask
  at::Tensor query_positions;  // [T]: positions at which the queries are rotated and masked
  int64_t last_query_position = -1;  // the largest query position on the host, or -1 where unknown
};

class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual AttentionInputs append(int layer, const NewEntries& entries) = 0;
  // Called once per layer and forward call with the attention probabilities
  // [heads, T, S] (fp32) over the inputs `append` returned. Budgeted caches use it.
  virtual void observe_attention(int layer, const at::Tensor& probabilities) { (void)layer; (void)probabilities; }
  virtual int64_t size(int layer) const = 0;
};

// Keeps every token, in order, with keys rotated at their original positions.
class FullKvCache final : public KvCache {
 public:
  FullKvCache(int64_t num_layers, int64_t kv_heads, int64_t head_dim, at::ScalarType dtype,
              at::Device device, int64_t initial_capacity = 256);

  AttentionInputs append(int layer, const NewEntries& entries) override;
  int64_t size(int layer) const override { return layers_[layer].length; }

  // Deep copy; the only way to copy a cache.
  FullKvCache clone() const;
  // Bytes held by the cache buffers (capacity, not length).
  int64_t allocated_bytes() const;
  void reserve(int64_t tokens);

 private:
  struct Layer {
    at::Tensor k, v;        // [kv_heads, capacity, head_dim]
    at::Tensor positions;   // [capacity] int64
    int64_t length = 0;
  };
  FullKvCache() = default;
  void grow(Layer& layer, int64_t needed);

  std::vector<Layer> layers_;
  int64_t kv_heads_ = 0, head_dim_ = 0;
  at::TensorOptions options_;
};

}  // namespace kvscope
