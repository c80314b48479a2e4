#include "cache/policy_cache.h"

#include <algorithm>
#include <chrono>
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

class StoredKeys : public KeySource {
 public:
  explicit StoredKeys(const at::Tensor& k) : k_(k) {}
  std::vector<float> key(int head, int slot) const override {
    const at::Tensor row = k_[head][slot].to(at::kCPU, at::kFloat).contiguous();
    return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
  }
  std::vector<float> keys(int head, int64_t* head_dim) const override {
    const at::Tensor all = k_[head].to(at::kCPU, at::kFloat).contiguous();
    *head_dim = all.size(1);
    return std::vector<float>(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  }

 private:
  const at::Tensor& k_;
};

}  // namespace

PolicyCache::PolicyCache(const PolicyCacheConfig& config, std::shared_ptr<CachePolicy> policy, const Rope& rope, int64_t budget)
    : config_(config), policy_(std::move(policy)), rope_(&rope), budget_(budget) {
  layers_.resize(config.num_layers);
  for (Layer& l : layers_) {
    l.heads.resize(config.num_kv_heads);
    l.free_slots.resize(config.num_kv_heads);
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
  for (HeadState& h : l.heads) {
    for (auto* vec : {&h.position, &h.count, &h.mult}) vec->resize(new_cap, 0);
    for (auto* vec : {&h.acc, &h.current, &h.current_mean}) vec->resize(new_cap, 0.0);
    h.key_norm.resize(new_cap, 0.0f);
  }
}

int64_t PolicyCache::size(int layer) const { return static_cast<int64_t>(layers_[layer].heads[0].order.size()); }

AttentionInputs PolicyCache::append(int layer_index, const NewEntries& e) {
  const Stopwatch timer(policy_seconds_);
  Layer& l = layers_[layer_index];
  const int64_t KV = config_.num_kv_heads, T = e.v.size(1);
  const at::Tensor host_pos = e.positions.to(at::kCPU);
  l.new_positions.assign(host_pos.data_ptr<int64_t>(), host_pos.data_ptr<int64_t>() + T);
  const at::Tensor norms = e.k_pre_rope.to(at::kFloat).norm(2, {-1}).to(at::kCPU).contiguous();  // [KV, T]
  const float* norm_data = norms.data_ptr<float>();

  // Choose a slot for each (head, token): a freed slot first, else the next unused one.
  std::vector<int64_t> head_idx, slot_idx;
  int64_t next_fresh = l.used;
  for (int64_t h = 0; h < KV; ++h) {
    int64_t fresh = l.used;
    for (int64_t t = 0; t < T; ++t) {
      int32_t slot;
      auto& free = l.free_slots[h];
      if (!free.empty()) {
        slot = free.back();
        free.pop_back();
      } else {
        slot = static_cast<int32_t>(fresh++);
      }
      head_idx.push_back(h);
      slot_idx.push_back(slot);
    }
    next_fresh = std::max(next_fresh, fresh);
  }
  grow(l, next_fresh);
  for (size_t i = 0; i < slot_idx.size(); ++i) {
    HeadState& s = l.heads[head_idx[i]];
    const int32_t slot = static_cast<int32_t>(slot_idx[i]);
    const int64_t t = static_cast<int64_t>(i) % T;
    s.order.push_back(slot);
    s.position[slot] = l.new_positions[t];
    s.acc[slot] = 0.0;
    s.count[slot] = 0;
    s.mult[slot] = 1;
    s.key_norm[slot] = norm_data[head_idx[i] * T + t];
  }
  if (next_fresh > l.used) l.used = next_fresh;
  for (int64_t h = 0; h < KV; ++h) {
    if (l.heads[h].order.size() != static_cast<size_t>(l.used)) fail("internal: cache slots out of step with the token count");
  }

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
  AttentionInputs in;
  in.values = l.v.narrow(1, 0, S);
  if (config_.positions == PositionMode::Original) {
    in.keys = l.k.narrow(1, 0, S);
    in.key_positions = l.pos.narrow(1, 0, S);
    in.query_positions = e.positions;
  } else {
    // Each kept key sits at its index in sequence order; the new queries are the last T.
    std::vector<int64_t> rank(KV * S);
    for (int64_t h = 0; h < KV; ++h) {
      const auto& order = l.heads[h].order;
      for (size_t r = 0; r < order.size(); ++r) rank[h * S + order[r]] = static_cast<int64_t>(r);
    }
    const at::Tensor ranks = long_tensor(rank, config_.device).view({KV, S});
    in.keys = rope_->apply(l.k.narrow(1, 0, S), ranks);
    in.key_positions = ranks;
    in.query_positions = at::arange(S - T, S, at::TensorOptions().dtype(at::kLong).device(config_.device));
  }
  return in;
}

void PolicyCache::observe_attention(int layer_index, const at::Tensor& probs) {
  const Stopwatch timer(policy_seconds_);
  Layer& l = layers_[layer_index];
  const int64_t KV = config_.num_kv_heads, H = config_.num_heads, group = H / KV;
  const int64_t T = probs.size(1), S = probs.size(2);
  if (T == 1 && probs.device().is_cpu() && probs.scalar_type() == at::kFloat) {
    // A decode step on the host: the tensor path's float64 arithmetic (group members summed
    // in order, the mean as that sum divided by the group size), without its temporaries.
    const at::Tensor p = probs.contiguous();
    const float* rows = p.data_ptr<float>();  // [H, S]
    for (int64_t h = 0; h < KV; ++h) {
      HeadState& st = l.heads[h];
      for (int32_t slot : st.order) {
        double sum = 0.0, largest = -std::numeric_limits<double>::infinity();
        for (int64_t g = 0; g < group; ++g) {
          const double x = static_cast<double>(rows[(h * group + g) * S + slot]);
          sum += x;
          largest = std::max(largest, x);
        }
        const double mean = sum / static_cast<double>(group);
        const double agg = config_.aggregation == AttentionAggregation::Mean ? mean
                           : config_.aggregation == AttentionAggregation::Sum ? sum : largest;
        st.acc[slot] += agg;
        st.current[slot] = agg;
        st.current_mean[slot] = mean;
        st.count[slot] += 1;  // one query, and every kept token (the new one too) is visible to it
      }
    }
  } else {
    observe_attention_tensors(l, probs);
  }
  decide_and_apply(layer_index, probs);
}

void PolicyCache::observe_attention_tensors(Layer& l, const at::Tensor& probs) {
  const int64_t KV = config_.num_kv_heads, H = config_.num_heads, group = H / KV;
  const int64_t T = probs.size(1), S = probs.size(2);
  // Aggregated in float64 so decisions do not hinge on float32 summation order.
  const at::Tensor grouped = probs.view({KV, group, T, S}).to(at::kDouble);
  at::Tensor agg;
  switch (config_.aggregation) {
    case AttentionAggregation::Mean: agg = grouped.mean(1); break;
    case AttentionAggregation::Sum: agg = grouped.sum(1); break;
    case AttentionAggregation::Max: agg = std::get<0>(grouped.max(1)); break;
  }
  const at::Tensor summed = agg.sum(1).to(at::kCPU, at::kDouble).contiguous();                         // [KV, S]
  const at::Tensor last = agg.select(1, T - 1).to(at::kCPU, at::kDouble).contiguous();                 // [KV, S]
  const at::Tensor last_mean = grouped.select(2, T - 1).mean(1).to(at::kCPU, at::kDouble).contiguous();  // [KV, S]
  const double* ps = summed.data_ptr<double>();
  const double* pl = last.data_ptr<double>();
  const double* pm = last_mean.data_ptr<double>();
  const int64_t first_new = l.new_positions.front();
  for (int64_t h = 0; h < KV; ++h) {
    HeadState& s = l.heads[h];
    for (int32_t slot : s.order) {
      s.acc[slot] += ps[h * S + slot];
      s.current[slot] = pl[h * S + slot];
      s.current_mean[slot] = pm[h * S + slot];
      // Queries of this call that could see the slot: all of them for older tokens; for a
      // token of this call, itself and the ones after it.
      s.count[slot] += s.position[slot] < first_new ? T : T - (s.position[slot] - first_new);
    }
  }
}

void PolicyCache::decide_and_apply(int layer_index, const at::Tensor& probs) {
  Layer& l = layers_[layer_index];
  const int64_t KV = config_.num_kv_heads;
  if (!policy_->compresses_layer(layer_index)) return;
  const int64_t n = size(layer_index);
  if (n <= budget_) return;
  if (n > budget_ + 1) {
    fail("cache over budget by ", n - budget_, " tokens after one call: prefill at most the budget, then decode");
  }
  std::vector<Decision> decisions(KV);
  policy_->decide(layer_index, l.heads, StoredKeys(l.k), decisions);
  if (decision_observer_) decision_observer_->on_decisions(layer_index, l.heads, decisions, l.v, probs);
  apply(layer_index, decisions);
}

void PolicyCache::apply(int layer_index, const std::vector<Decision>& decisions) {
  Layer& l = layers_[layer_index];
  std::vector<int64_t> mh, mj, mr, ah, aj, at_;
  std::vector<double> mw, as;
  for (size_t h = 0; h < decisions.size(); ++h) {
    const Decision& d = decisions[h];
    HeadState& s = l.heads[h];
    if (d.kind == Decision::None) continue;
    const int32_t victim = s.order[d.victim];
    if (d.kind == Decision::ConvexMerge) {
      mh.push_back(static_cast<int64_t>(h));
      mj.push_back(victim);
      mr.push_back(s.order[d.receiver]);
      mw.push_back(d.weight);
      s.mult[s.order[d.receiver]] += s.mult[victim];
    } else if (d.kind == Decision::AdditiveMerge) {
      for (int t : d.targets) {
        ah.push_back(static_cast<int64_t>(h));
        aj.push_back(victim);
        at_.push_back(s.order[t]);
        as.push_back(d.scale);
      }
    }
  }
  const auto dev = config_.device;
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
    HeadState& s = l.heads[h];
    const int32_t victim = s.order[d.victim];
    s.order.erase(s.order.begin() + d.victim);
    l.free_slots[h].push_back(victim);
  }
}

std::vector<int64_t> PolicyCache::kept_positions(int layer, int head) const {
  const HeadState& s = layers_[layer].heads[head];
  std::vector<int64_t> out;
  for (int32_t slot : s.order) out.push_back(s.position[slot]);
  return out;
}

std::vector<float> PolicyCache::value(int layer, int head, int index) const {
  const Layer& l = layers_[layer];
  const at::Tensor row = l.v[head][l.heads[head].order[index]].to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
}

std::unique_ptr<KeySource> PolicyCache::key_source(int layer) const { return std::make_unique<StoredKeys>(layers_[layer].k); }

std::pair<at::Tensor, at::Tensor> PolicyCache::head_keys_values(int layer, int head) const {
  const Layer& l = layers_[layer];
  const auto& order = l.heads[head].order;
  const at::Tensor idx = long_tensor(std::vector<int64_t>(order.begin(), order.end()), config_.device);
  at::Tensor k = l.k[head].index_select(0, idx);
  if (config_.positions == PositionMode::InCache) {
    k = rope_->apply(k.unsqueeze(0), at::arange(static_cast<int64_t>(order.size()), idx.options())).squeeze(0);
  }
  return {k, l.v[head].index_select(0, idx)};
}

PolicyCache PolicyCache::clone() const {
  PolicyCache copy(*this);
  for (Layer& l : copy.layers_) {
    l.k = l.k.clone();
    l.v = l.v.clone();
    l.pos = l.pos.clone();
  }
  return copy;
}

}  // namespace kvscope
