#include "model/kv_cache.h"

#include <algorithm>

namespace kvscope {

FullKvCache::FullKvCache(int64_t num_layers, int64_t kv_heads, int64_t head_dim, at::ScalarType dtype,
                         at::Device device, int64_t initial_capacity)
    : kv_heads_(kv_heads), head_dim_(head_dim), options_(at::TensorOptions().dtype(dtype).device(device)) {
  layers_.resize(num_layers);
  for (Layer& l : layers_) grow(l, std::max<int64_t>(1, initial_capacity));
}

void FullKvCache::grow(Layer& layer, int64_t needed) {
  const int64_t old_cap = layer.k.defined() ? layer.k.size(1) : 0;
  if (needed <= old_cap) return;
  // Doubling keeps appends amortised O(1); a per-step reallocation would copy the whole
  // cache every token.
  const int64_t cap = std::max(needed, old_cap * 2);
  at::Tensor k = at::empty({kv_heads_, cap, head_dim_}, options_);
  at::Tensor v = at::empty({kv_heads_, cap, head_dim_}, options_);
  at::Tensor pos = at::empty({cap}, options_.dtype(at::kLong));
  if (layer.length > 0) {
    k.narrow(1, 0, layer.length).copy_(layer.k.narrow(1, 0, layer.length));
    v.narrow(1, 0, layer.length).copy_(layer.v.narrow(1, 0, layer.length));
    pos.narrow(0, 0, layer.length).copy_(layer.positions.narrow(0, 0, layer.length));
  }
  layer.k = k;
  layer.v = v;
  layer.positions = pos;
}

void FullKvCache::reserve(int64_t tokens) {
  for (Layer& l : layers_) grow(l, tokens);
}

AttentionInputs FullKvCache::append(int layer_index, const NewEntries& e) {
  Layer& l = layers_[layer_index];
  const int64_t t = e.k.size(1);
  grow(l, l.length + t);
  l.k.narrow(1, l.length, t).copy_(e.k);
  l.v.narrow(1, l.length, t).copy_(e.v);
  l.positions.narrow(0, l.length, t).copy_(e.positions);
  l.length += t;
  return AttentionInputs{l.k.narrow(1, 0, l.length), l.v.narrow(1, 0, l.length),
                         l.positions.narrow(0, 0, l.length), e.positions, e.last_position};
}

FullKvCache FullKvCache::clone() const {
  FullKvCache copy;
  copy.kv_heads_ = kv_heads_;
  copy.head_dim_ = head_dim_;
  copy.options_ = options_;
  for (const Layer& l : layers_) {
    copy.layers_.push_back(Layer{l.k.clone(), l.v.clone(), l.positions.clone(), l.length});
  }
  return copy;
}

int64_t FullKvCache::allocated_bytes() const {
  int64_t total = 0;
  for (const Layer& l : layers_) total += (l.k.numel() + l.v.numel()) * l.k.element_size() + l.positions.numel() * 8;
  return total;
}

}  // namespace kvscope
