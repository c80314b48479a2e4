// PolicyCache's device path (methods §2.10): the bookkeeping lives in DeviceCells tensors on
// the cache's device, and appends, observations, decisions and merges are tensor operations
// that read no tensor data on the host. The host keeps only what the call sequence fixes:
// head sizes, freed-slot counts and the layer's used slots. It makes the same decisions as
// the host path and rounds alike (tests/test_device_bookkeeping.cpp).
#include <algorithm>

#include "cache/policy_cache.h"
#include "core/error.h"
#include "model/rope.h"

namespace kvscope {
namespace {

// Key L2 norms [kv_heads, T] of keys [kv_heads, T, head_dim] in float64, summed dimension by
// dimension as the host path does.
at::Tensor key_norms(const at::Tensor& keys) {
  const at::Tensor k = keys.to(at::kDouble);
  return sum_in_order(k * k, -1).sqrt().to(at::kFloat);
}

}  // namespace

AttentionInputs PolicyCache::append_on_device(Layer& l, const NewEntries& e) {
  const int64_t KV = config_.num_kv_heads, T = e.v.size(1);
  ++l.changes;
  int64_t fresh_end = 0;
  const at::Tensor slots = l.device.take_slots(T, l.used, &fresh_end);  // [KV, T]
  grow(l, fresh_end);
  l.device.append(slots, key_norms(e.k_pre_rope));
  l.used = std::max(l.used, fresh_end);

  const at::Tensor& keys_in = config_.positions == PositionMode::Original ? e.k : e.k_pre_rope;
  const at::Tensor rows = slots.unsqueeze(2).expand({KV, T, config_.head_dim});
  l.k.scatter_(1, rows, keys_in.to(l.k.scalar_type()));
  l.v.scatter_(1, rows, e.v.to(l.v.scalar_type()));
  l.pos.scatter_(1, slots, e.positions.unsqueeze(0).expand({KV, T}));
  l.first_new_position = e.positions.narrow(0, 0, 1);

  const int64_t S = l.used;
  const std::vector<int64_t>& sizes = l.device.sizes();
  const bool ragged = std::any_of(sizes.begin(), sizes.end(), [&](int64_t n) { return n != S; });
  const at::Tensor hidden = ragged ? mask_not(l.device.live().narrow(1, 0, S)) : at::Tensor();
  AttentionInputs in;
  in.values = l.v.narrow(1, 0, S);
  if (config_.positions == PositionMode::Original) {
    in.keys = l.k.narrow(1, 0, S);
    in.key_positions = ragged ? l.pos.narrow(1, 0, S).masked_fill(hidden, kHiddenPosition) : l.pos.narrow(1, 0, S);
    in.query_positions = e.positions;
    in.last_query_position = e.last_position;
  } else {
    // Each kept key sits at its index in sequence order, counted so that every head's newest
    // token is at the newest query's position (as on the host path).
    const int64_t n = *std::max_element(sizes.begin(), sizes.end());
    const int64_t cap = l.device.capacity();
    std::vector<int64_t> first;
    for (const int64_t s : sizes) first.push_back(n - s);
    const at::Tensor index = at::arange(cap, slots.options()).unsqueeze(0);
    // Sequence indices past a head's size point at a spare column that is then cut off.
    const at::Tensor beyond = index.ge(per_head_tensor(sizes, config_.device).unsqueeze(1));
    at::Tensor rank = at::zeros({KV, cap + 1}, slots.options());
    rank.scatter_(1, l.device.order().masked_fill(beyond, cap), index + per_head_tensor(first, config_.device).unsqueeze(1));
    rank = rank.narrow(1, 0, S);
    in.keys = rope_->apply_known(l.k.narrow(1, 0, S), rank, n - 1);
    in.key_positions = ragged ? rank.masked_fill(hidden, kHiddenPosition) : rank;
    in.query_positions = at::arange(n - T, n, slots.options());
    in.last_query_position = n - 1;
  }
  return in;
}

void PolicyCache::observe_on_device(Layer& l, const at::Tensor& probs) {
  ++l.changes;
  const int64_t T = probs.size(1), S = probs.size(2);
  const at::Tensor agg = aggregate_query_heads(probs, config_.num_kv_heads, config_.aggregation);  // [KV, T, S]
  l.device.observe(agg.sum(1), agg.select(1, T - 1), l.pos.narrow(1, 0, S), l.first_new_position, T);
}

void PolicyCache::reduce_on_device(int layer_index, const at::Tensor& probs) {
  Layer& l = layers_[static_cast<size_t>(layer_index)];
  const int64_t KV = config_.num_kv_heads;
  const DeviceStep step{l.device, l.k, probs.select(1, probs.size(1) - 1), config_.num_heads};
  for (int64_t n = size(layer_index); n > budget_;) {
    DeviceDecision d;
    if (!policy_->decide_on_device(layer_index, step, d)) {
      // A policy (or weighting) with no device form decides on a host copy of the state.
      std::vector<Decision> decisions(static_cast<size_t>(KV));
      policy_->decide(layer_index, host_heads(layer_index), *step_view(l, &probs), decisions);
      d = DeviceDecision::from_host(decisions, config_.device);
    }
    // The budget holds per head: a head that is not over it keeps its tokens.
    for (int64_t h = 0; h < KV; ++h)
      if (l.device.sizes()[static_cast<size_t>(h)] <= budget_) d.kinds[static_cast<size_t>(h)] = Decision::None;
    if (decision_observer_) decision_observer_->on_decisions(layer_index, host_heads(layer_index), d.to_host(), l.v, probs);
    l.device.apply(d, l.v);
    ++l.changes;
    const int64_t after = size(layer_index);
    if (after >= n) fail("internal: the policy left a head over budget unchanged");
    n = after;
  }
}

}  // namespace kvscope
