#include "cache/policy_cache.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "model/rope.h"

namespace kvscope {
namespace {

at::Tensor long_tensor(const std::vector<int64_t>& v, at::Device device) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(device);
}

class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_;
};

// Keys from the layer's store; attention from the step's probabilities [H, T, S], whose last
// query row is copied to the host the first time a decision asks for it.
class LayerStep : public StepView {
 public:
  LayerStep(const at::Tensor& k, const at::Tensor* probabilities, int query_heads)
      : k_(k), probs_(probabilities), query_heads_(query_heads) {}
  std::vector<float> key(int head, SlotId slot) const override {
    const at::Tensor row = k_[head][index_of(slot)].to(at::kCPU, at::kFloat).contiguous();
    return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
  }
  std::vector<float> keys(int head, int64_t* head_dim) const override {
    const at::Tensor all = k_[head].to(at::kCPU, at::kFloat).contiguous();
    *head_dim = all.size(1);
    return std::vector<float>(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  }
  const float* attention_row(int query_head) const override {
    if (!probs_) fail("internal: this decision was made outside a decode step and cannot read attention");
    if (!last_.defined()) last_ = probs_->select(1, probs_->size(1) - 1).to(at::kCPU, at::kFloat).contiguous();
    return last_.data_ptr<float>() + query_head * last_.size(1);
  }
  int query_heads() const override { return query_heads_; }

 private:
  const at::Tensor& k_;
  const at::Tensor* probs_;
  int query_heads_;
  mutable at::Tensor last_;
};


}  // namespace

PolicyCache::PolicyCache(const PolicyCacheConfig& config, std::shared_ptr<CachePolicy> policy, const Rope& rope, int64_t budget)
    : config_(config), policy_(std::move(policy)), rope_(&rope), budget_(budget) {
  on_device_ = config.bookkeeping == CacheBookkeeping::Device ||
               (config.bookkeeping == CacheBookkeeping::Auto && !config.device.is_cpu());
  layers_.resize(config.num_layers);
  for (Layer& l : layers_) {
    if (on_device_) {
      l.device = DeviceCells(config.num_kv_heads, config.device);
    } else {
      l.heads.resize(config.num_kv_heads);
    }
    grow(l, std::min<int64_t>(budget + 1, 1 << 16));
  }
}

void PolicyCache::grow(Layer& l, int64_t needed) {
  const int64_t cap = l.k.defined() ? l.k.size(1) : 0;
  if (needed <= cap) return;
  const int64_t new_cap = std::max(needed, cap * 2);
  const auto opt = at::TensorOptions().dtype(config_.dtype).device(config_.device);
  at::Tensor k = at::zeros({config_.num_kv_heads, new_cap, config_.head_dim}, opt);
  at::Tensor v = at::zeros({config_.num_kv_heads, new_cap, config_.head_dim}, opt);
  at::Tensor pos = at::zeros({config_.num_kv_heads, new_cap}, opt.dtype(at::kLong));
  if (cap > 0) {
    k.narrow(1, 0, cap).copy_(l.k);
    v.narrow(1, 0, cap).copy_(l.v);
    pos.narrow(1, 0, cap).copy_(l.pos);
  }
  l.k = k;
  l.v = v;
  l.pos = pos;
  for (HeadCells& h : l.heads) h.reserve(new_cap);
  if (on_device_) l.device.reserve(new_cap);
}

const std::vector<HeadCells>& PolicyCache::host_heads(int layer) const {
  const Layer& l = layers_[static_cast<size_t>(layer)];
  if (!on_device_) return l.heads;
  if (l.host_view_changes != l.changes) {
    l.host_view = l.device.to_host(l.pos);
    l.host_view_changes = l.changes;
  }
  return l.host_view;
}

int64_t PolicyCache::size(int layer) const {
  int64_t n = 0;
  if (on_device_) {
    for (const int64_t s : layers_[layer].device.sizes()) n = std::max(n, s);
  } else {
    for (const HeadCells& h : layers_[layer].heads) n = std::max<int64_t>(n, h.size());
  }
  return n;
}

AttentionInputs PolicyCache::append(int layer_index, const NewEntries& e) {
  const Stopwatch timer(policy_seconds_);
  Layer& l = layers_[layer_index];
  if (on_device_) return append_on_device(l, e);
  const int64_t KV = config_.num_kv_heads, T = e.v.size(1);
  const at::Tensor host_pos = e.positions.to(at::kCPU);
  l.new_positions.assign(host_pos.data_ptr<int64_t>(), host_pos.data_ptr<int64_t>() + T);
  // Key norms in one fixed order (float64, dimension by dimension) whatever the number of
  // tokens: at::norm vectorises differently for one row and for many, and a rounding
  // difference between prefill and decode would break ties between equal keys differently.
  const at::Tensor keys_host = e.k_pre_rope.to(at::kCPU, at::kFloat).contiguous();  // [KV, T, hd]
  const float* key_data = keys_host.data_ptr<float>();
  const int64_t hd = keys_host.size(2);
  std::vector<float> norm_data(static_cast<size_t>(KV * T));
  for (int64_t r = 0; r < KV * T; ++r) {
    double sum = 0.0;
    for (int64_t d = 0; d < hd; ++d) sum += static_cast<double>(key_data[r * hd + d]) * key_data[r * hd + d];
    norm_data[static_cast<size_t>(r)] = static_cast<float>(std::sqrt(sum));
  }

  // Choose a slot for each (head, token): a freed slot first, else the next unused one.
  std::vector<int64_t> head_idx, slot_idx;
  int64_t next_fresh = l.used;
  for (int64_t h = 0; h < KV; ++h) {
    int64_t fresh = l.used;
    for (int64_t t = 0; t < T; ++t) {
      const std::optional<SlotId> reused = l.heads[h].take_free_slot();
      head_idx.push_back(h);
      slot_idx.push_back(reused ? index_of(*reused) : fresh++);
    }
    next_fresh = std::max(next_fresh, fresh);
  }
  grow(l, next_fresh);
  for (size_t i = 0; i < slot_idx.size(); ++i) {
    const int64_t t = static_cast<int64_t>(i) % T;
    l.heads[head_idx[i]].append(SlotId{static_cast<int32_t>(slot_idx[i])}, TokenPosition{l.new_positions[t]},
                                norm_data[head_idx[i] * T + t]);
  }
  if (next_fresh > l.used) l.used = next_fresh;

  const at::Tensor& keys_in = config_.positions == PositionMode::Original ? e.k : e.k_pre_rope;
  if (config_.device.is_cpu()) {
    // On the host each new row is one copy into its slot; three index_put_ calls with their
    // index tensors cost more than the copies themselves at decode time.
    const at::Tensor keys = keys_in.to(l.k.scalar_type()).contiguous(), values = e.v.to(l.v.scalar_type()).contiguous();
    const int64_t cap = l.k.size(1), hd = config_.head_dim, row_bytes = hd * static_cast<int64_t>(l.k.element_size());
    auto* k_dst = static_cast<char*>(l.k.data_ptr());
    auto* v_dst = static_cast<char*>(l.v.data_ptr());
    const auto* k_src = static_cast<const char*>(keys.data_ptr());
    const auto* v_src = static_cast<const char*>(values.data_ptr());
    int64_t* pos_dst = l.pos.data_ptr<int64_t>();
    for (size_t i = 0; i < slot_idx.size(); ++i) {
      const int64_t h = head_idx[i], t = static_cast<int64_t>(i) % T, to = h * cap + slot_idx[i], from = h * T + t;
      std::memcpy(k_dst + to * row_bytes, k_src + from * row_bytes, static_cast<size_t>(row_bytes));
      std::memcpy(v_dst + to * row_bytes, v_src + from * row_bytes, static_cast<size_t>(row_bytes));
      pos_dst[to] = l.new_positions[static_cast<size_t>(t)];
    }
  } else {
    const at::Tensor hi = long_tensor(head_idx, config_.device), si = long_tensor(slot_idx, config_.device);
    l.k.index_put_({hi, si}, keys_in.reshape({KV * T, config_.head_dim}));
    l.v.index_put_({hi, si}, e.v.reshape({KV * T, config_.head_dim}));
    l.pos.index_put_({hi, si}, e.positions.repeat({KV}));
  }

  const int64_t S = l.used;
  // A head that holds fewer tokens than the layer's slots has slots attention must skip.
  bool ragged = false;
  for (const HeadCells& h : l.heads) ragged = ragged || h.size() != S;
  std::vector<char> hidden;
  if (ragged) {
    hidden.assign(static_cast<size_t>(KV * S), 1);
    for (int64_t h = 0; h < KV; ++h)
      for (const SlotId slot : l.heads[h].order()) hidden[static_cast<size_t>(h * S + index_of(slot))] = 0;
  }
  AttentionInputs in;
  in.values = l.v.narrow(1, 0, S);
  if (config_.positions == PositionMode::Original) {
    in.keys = l.k.narrow(1, 0, S);
    in.key_positions = l.pos.narrow(1, 0, S);
    in.query_positions = e.positions;
    in.last_query_position = e.last_position;
    if (ragged) {
      const at::Tensor host = in.key_positions.to(at::kCPU).contiguous();
      std::vector<int64_t> pos(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + KV * S);
      for (size_t i = 0; i < pos.size(); ++i) if (hidden[i]) pos[i] = kHiddenPosition;
      in.key_positions = long_tensor(pos, config_.device).view({KV, S});
    }
  } else {
    // Each kept key sits at its index in sequence order, counted so that every head's newest
    // token is at the newest query's position; the new queries are the last T of the
    // fullest head.
    const int64_t n = size(layer_index);
    std::vector<int64_t> rank(static_cast<size_t>(KV * S), 0);
    for (int64_t h = 0; h < KV; ++h) {
      const auto& order = l.heads[h].order();
      const int64_t first = n - static_cast<int64_t>(order.size());
      for (size_t r = 0; r < order.size(); ++r) rank[static_cast<size_t>(h * S + index_of(order[r]))] = first + static_cast<int64_t>(r);
    }
    const at::Tensor ranks = long_tensor(rank, config_.device).view({KV, S});
    in.keys = rope_->apply(l.k.narrow(1, 0, S), ranks);
    in.key_positions = ranks;
    if (ragged) {
      for (size_t i = 0; i < rank.size(); ++i) if (hidden[i]) rank[i] = kHiddenPosition;
      in.key_positions = long_tensor(rank, config_.device).view({KV, S});
    }
    in.query_positions = at::arange(n - T, n, at::TensorOptions().dtype(at::kLong).device(config_.device));
    in.last_query_position = n - 1;
  }
  return in;
}

void PolicyCache::observe_attention(int layer_index, const at::Tensor& probs) {
  const Stopwatch timer(policy_seconds_);
  Layer& l = layers_[layer_index];
  const int64_t KV = config_.num_kv_heads, H = config_.num_heads, group = H / KV;
  const int64_t T = probs.size(1), S = probs.size(2);
  if (on_device_) {
    observe_on_device(l, probs);
  } else if (T == 1 && probs.device().is_cpu() && probs.scalar_type() == at::kFloat) {
    // A decode step on the host: the tensor path's float64 arithmetic (group members summed
    // in order, the mean as that sum divided by the group size), without its temporaries.
    const at::Tensor p = probs.contiguous();
    const float* rows = p.data_ptr<float>();  // [H, S]
    for (int64_t h = 0; h < KV; ++h) {
      HeadCells& cells = l.heads[h];
      for (const SlotId slot : cells.order()) {
        double sum = 0.0, largest = -std::numeric_limits<double>::infinity();
        for (int64_t g = 0; g < group; ++g) {
          const double x = static_cast<double>(rows[(h * group + g) * S + index_of(slot)]);
          sum += x;
          largest = std::max(largest, x);
        }
        const double agg = config_.aggregation == AttentionAggregation::Mean ? sum / static_cast<double>(group)
                           : config_.aggregation == AttentionAggregation::Sum ? sum : largest;
        cells.observe(slot, agg, agg, 1);  // one query, and every kept token (the new one too) is visible to it
      }
    }
  } else {
    observe_attention_tensors(l, probs);
  }
  decide_and_apply(layer_index, probs);
}

void PolicyCache::observe_attention_tensors(Layer& l, const at::Tensor& probs) {
  const int64_t KV = config_.num_kv_heads;
  const int64_t T = probs.size(1), S = probs.size(2);
  const at::Tensor agg = aggregate_query_heads(probs, KV, config_.aggregation);
  const at::Tensor summed = agg.sum(1).to(at::kCPU, at::kDouble).contiguous();          // [KV, S]
  const at::Tensor last = agg.select(1, T - 1).to(at::kCPU, at::kDouble).contiguous();  // [KV, S]
  const double* ps = summed.data_ptr<double>();
  const double* pl = last.data_ptr<double>();
  const int64_t first_new = l.new_positions.front();
  for (int64_t h = 0; h < KV; ++h) {
    HeadCells& cells = l.heads[h];
    for (const SlotId slot : cells.order()) {
      // Queries of this call that could see the slot: all of them for older tokens; for a
      // token of this call, itself and the ones after it.
      const int64_t pos = value_of(cells.position(slot));
      const int64_t i = h * S + index_of(slot);
      cells.observe(slot, ps[i], pl[i], pos < first_new ? T : T - (pos - first_new));
    }
  }
}

void PolicyCache::decide_and_apply(int layer_index, const at::Tensor& probs) {
  if (compression_ == Compression::Hold) {
    // What a later cut reads: the last query's row, copied so the call's matrix can go.
    layers_[layer_index].held_last_query = probs.narrow(1, probs.size(1) - 1, 1).clone();
    return;
  }
  if (!policy_->compresses_layer(layer_index)) return;
  const int64_t n = size(layer_index);
  if (n > budget_ + 1) {
    fail("cache over budget by ", n - budget_, " tokens after one call: prefill at most the budget, then decode");
  }
  reduce_to_budget(layer_index, probs);
}

void PolicyCache::reduce_to_budget(int layer_index, const at::Tensor& probs) {
  if (on_device_) return reduce_on_device(layer_index, probs);
  Layer& l = layers_[layer_index];
  const int64_t KV = config_.num_kv_heads;
  const std::unique_ptr<StepView> step = step_view(l, &probs);
  // One token leaves each over-budget head per decision, as in decoding.
  for (int64_t n = size(layer_index); n > budget_;) {
    std::vector<Decision> decisions(KV);
    policy_->decide(layer_index, l.heads, *step, decisions);
    // The budget holds per head: a head that is not over it keeps its tokens.
    for (int64_t h = 0; h < KV; ++h)
      if (l.heads[h].size() <= budget_) decisions[h] = Decision{};
    if (decision_observer_) decision_observer_->on_decisions(layer_index, l.heads, decisions, l.v, probs);
    apply(layer_index, decisions);
    const int64_t after = size(layer_index);
    if (after >= n) fail("internal: the policy left a head over budget unchanged");
    n = after;
  }
}

void PolicyCache::cut_to_budget(std::shared_ptr<CachePolicy> policy, int64_t budget) {
  const Stopwatch timer(policy_seconds_);
  policy_ = std::move(policy);
  budget_ = budget;
  compression_ = Compression::EachCall;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int layer = static_cast<int>(i);
    Layer& l = layers_[i];
    if (!policy_->compresses_layer(layer) || size(layer) <= budget_) continue;
    if (!l.held_last_query.defined()) fail("internal: cut_to_budget needs a cache that held its last forward call");
    reduce_to_budget(layer, l.held_last_query);
  }
  for (Layer& l : layers_) l.held_last_query = at::Tensor();
}

void PolicyCache::apply(int layer_index, const std::vector<Decision>& decisions) {
  Layer& l = layers_[layer_index];
  for (const Decision& d : decisions)
    if (d.kind == Decision::ConvexMerge && d.receiver == d.victim) fail("internal: a token cannot merge into itself");
  if (on_device_) {
    l.device.apply(DeviceDecision::from_host(decisions, config_.device), l.v);
    ++l.changes;
    return;
  }
  if (decisions.size() != l.heads.size()) fail("internal: ", decisions.size(), " decisions for ", l.heads.size(), " KV heads");
  std::vector<int64_t> mh, mj, mr, ah, aj, at_;
  std::vector<double> mw, as;
  for (size_t h = 0; h < decisions.size(); ++h) {
    const Decision& d = decisions[h];
    const HeadCells& s = l.heads[h];
    if (d.kind == Decision::None) continue;
    const int32_t victim = index_of(s.slot(d.victim));
    if (d.kind == Decision::ConvexMerge) {
      mh.push_back(static_cast<int64_t>(h));
      mj.push_back(victim);
      mr.push_back(index_of(s.slot(d.receiver)));
      mw.push_back(d.weight);
    } else if (d.kind == Decision::AdditiveMerge) {
      for (int t : d.targets) {
        ah.push_back(static_cast<int64_t>(h));
        aj.push_back(victim);
        at_.push_back(index_of(s.slot(t)));
        as.push_back(d.scale);
      }
    }
  }
  const auto dev = config_.device;
  if (dev.is_cpu() && l.v.scalar_type() == at::kFloat && l.v.is_contiguous()) {
    // On the host in float32: the same float operations as the tensor path below, in the
    // same order (this file is compiled without contraction into FMA), without the dozen
    // small tensors each decision would build; a prompt's cut makes thousands of decisions.
    float* v = l.v.data_ptr<float>();
    const int64_t cap = l.v.size(1), hd = l.v.size(2);
    auto row = [&](int64_t head, int64_t slot) { return v + (head * cap + slot) * hd; };
    for (size_t i = 0; i < mh.size(); ++i) {
      const float w = static_cast<float>(mw[i]), rest = 1.0f - w;
      const float* vj = row(mh[i], mj[i]);
      float* vr = row(mh[i], mr[i]);
      for (int64_t d = 0; d < hd; ++d) {
        const float kept = w * vj[d], own = rest * vr[d];
        vr[d] = kept + own;
      }
    }
    for (size_t i = 0; i < ah.size(); ++i) {
      const float scale = static_cast<float>(as[i]);
      const float* vj = row(ah[i], aj[i]);
      float* vt = row(ah[i], at_[i]);
      for (int64_t d = 0; d < hd; ++d) vt[d] += scale * vj[d];
    }
    mh.clear();
    ah.clear();
  }
  if (!mh.empty()) {
    const at::Tensor h = long_tensor(mh, dev), j = long_tensor(mj, dev), r = long_tensor(mr, dev);
    const at::Tensor w = at::tensor(mw, at::TensorOptions().dtype(at::kDouble)).to(dev, at::kFloat).unsqueeze(1);
    const at::Tensor vj = l.v.index({h, j}).to(at::kFloat), vr = l.v.index({h, r}).to(at::kFloat);
    l.v.index_put_({h, r}, (w * vj + (1 - w) * vr).to(l.v.scalar_type()));
  }
  if (!ah.empty()) {
    const at::Tensor h = long_tensor(ah, dev), j = long_tensor(aj, dev), t = long_tensor(at_, dev);
    const at::Tensor sc = at::tensor(as, at::TensorOptions().dtype(at::kDouble)).to(dev, at::kFloat).unsqueeze(1);
    l.v.index_put_({h, t}, (sc * l.v.index({h, j}).to(at::kFloat)).to(l.v.scalar_type()), /*accumulate=*/true);
  }
  for (size_t h = 0; h < decisions.size(); ++h) {
    const Decision& d = decisions[h];
    if (d.kind == Decision::None) continue;
    l.heads[h].remove(d.victim, d.kind == Decision::ConvexMerge ? d.receiver : -1);
  }
}

void PolicyCache::check_invariants() const {
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    for (const HeadCells& h : host_heads(static_cast<int>(i))) {
      h.check_invariants();
      if (h.capacity() < l.used) fail("cache metadata: a head's capacity is below the layer's used slots");
    }
  }
}

std::vector<int64_t> PolicyCache::kept_positions(int layer, int head) const {
  const HeadCells& s = cells(layer, head);
  std::vector<int64_t> out;
  for (const SlotId slot : s.order()) out.push_back(value_of(s.position(slot)));
  return out;
}

std::vector<float> PolicyCache::value(int layer, int head, int index) const {
  const Layer& l = layers_[layer];
  const at::Tensor row = l.v[head][index_of(cells(layer, head).slot(index))].to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
}

std::unique_ptr<StepView> PolicyCache::key_source(int layer) const { return step_view(layers_[layer], nullptr); }

std::unique_ptr<StepView> PolicyCache::step_view(const Layer& l, const at::Tensor* probabilities) const {
  return std::make_unique<LayerStep>(l.k, probabilities, static_cast<int>(config_.num_heads));
}

std::pair<at::Tensor, at::Tensor> PolicyCache::head_keys_values(int layer, int head) const {
  const Layer& l = layers_[layer];
  const auto& order = cells(layer, head).order();
  std::vector<int64_t> slots;
  for (const SlotId s : order) slots.push_back(index_of(s));
  const at::Tensor idx = long_tensor(slots, config_.device);
  at::Tensor k = l.k[head].index_select(0, idx);
  if (config_.positions == PositionMode::InCache) {
    // The ranks append() rotates by: every head's newest token at the newest query's position.
    const int64_t first = size(layer) - static_cast<int64_t>(order.size());
    k = rope_->apply(k.unsqueeze(0), at::arange(first, first + static_cast<int64_t>(order.size()), idx.options())).squeeze(0);
  }
  return {k, l.v[head].index_select(0, idx)};
}

PolicyCache PolicyCache::clone() const {
  PolicyCache copy(*this);
  for (Layer& l : copy.layers_) {
    l.k = l.k.clone();
    l.v = l.v.clone();
    l.pos = l.pos.clone();
    if (on_device_) l.device = l.device.clone();
    l.host_view_changes = -1;
  }
  return copy;
}

}  // namespace kvscope
