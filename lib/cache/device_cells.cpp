#include "cache/device_cells.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace kvscope {
namespace {

at::TensorOptions long_options(at::Device device) { return at::TensorOptions().dtype(at::kLong).device(device); }

// Host copies of a device tensor (contiguous, on the CPU).
at::Tensor host(const at::Tensor& t) { return t.to(at::kCPU).contiguous(); }

}  // namespace

at::Tensor sum_in_order(const at::Tensor& x, int64_t dim) { return x.cumsum(dim).select(dim, -1); }

at::Tensor per_head_tensor(const std::vector<int64_t>& values, at::Device device) {
  const bool uniform = std::all_of(values.begin(), values.end(), [&](int64_t v) { return v == values.front(); });
  if (!values.empty() && uniform) return at::full({static_cast<int64_t>(values.size())}, values.front(), long_options(device));
  return upload(values, device);
}

DeviceCells::DeviceCells(int64_t kv_heads, at::Device device)
    : sizes_(static_cast<size_t>(kv_heads), 0), free_(static_cast<size_t>(kv_heads), 0) {
  const auto o = long_options(device);
  order_ = at::zeros({kv_heads, 0}, o);
  cells_ = at::zeros({kv_heads, 0, kFields}, o.dtype(at::kDouble));
  slot_index_ = at::zeros({1, 0}, o);
  head_index_ = at::arange(kv_heads, o);
  std::vector<double> fresh(kFields, 0.0);
  fresh[kMultiplicity] = 1.0;
  fresh[kFreed] = -1.0;
  fresh[kLive] = 1.0;
  new_token_ = at::tensor(fresh, at::TensorOptions().dtype(at::kDouble)).to(device);
}

void DeviceCells::reserve(int64_t capacity) {
  const int64_t old = this->capacity();
  if (capacity <= old) return;
  at::Tensor order = at::zeros({order_.size(0), capacity}, order_.options());
  order.narrow(1, 0, old).copy_(order_);
  order_ = order;
  at::Tensor cells = at::zeros({cells_.size(0), capacity, kFields}, cells_.options());
  cells.narrow(1, 0, old).copy_(cells_);
  cells.narrow(1, old, capacity - old).select(2, kFreed).fill_(-1.0);
  cells_ = cells;
  slot_index_ = at::arange(capacity, order_.options()).unsqueeze(0);
  region_begin_.clear();
}

at::Tensor DeviceCells::in_order(const at::Tensor& per_slot) const {
  if (per_slot.dim() == 2) return per_slot.gather(1, order_);
  return per_slot.gather(1, order_.unsqueeze(-1).expand({order_.size(0), order_.size(1), per_slot.size(2)}));
}

at::Tensor DeviceCells::region_mask(const std::vector<int64_t>& begin, const std::vector<int64_t>& end) const {
  if (begin != region_begin_ || end != region_end_) {
    region_ = slot_index_.ge(per_head_tensor(begin, device()).unsqueeze(1)) & slot_index_.lt(per_head_tensor(end, device()).unsqueeze(1));
    region_begin_ = begin;
    region_end_ = end;
  }
  return region_;
}

at::Tensor DeviceCells::take_slots(int64_t T, int64_t first_fresh, int64_t* fresh_end) const {
  std::vector<int64_t> reused(sizes_.size());
  int64_t most = 0, fewest = T;
  *fresh_end = first_fresh;
  for (size_t h = 0; h < sizes_.size(); ++h) {
    reused[h] = std::min(T, free_[h]);
    most = std::max(most, reused[h]);
    fewest = std::min(fewest, reused[h]);
    *fresh_end = std::max(*fresh_end, first_fresh + T - reused[h]);
  }
  const int64_t KV = kv_heads();
  // Freed slots have distinct stamps, so the top stamps in order are the LIFO order of the
  // host path's free list.
  auto latest_freed = [&](int64_t n) { return std::get<1>(at::topk(field(kFreed), n, 1, /*largest=*/true, /*sorted=*/true)); };
  if (fewest == T) return latest_freed(T);  // steady decoding: every head reuses a slot
  const at::Tensor t = at::arange(T, long_options(device())).unsqueeze(0);  // [1, T]
  if (most == 0) return (t + first_fresh).expand({KV, T});                  // a growing cache
  const at::Tensor k = per_head_tensor(reused, device()).unsqueeze(1);      // [KV, 1]
  const at::Tensor takes_freed = t.lt(k);
  // Fresh slots are numbered from first_fresh on, after the head's reused ones.
  at::Tensor freed = latest_freed(most);
  if (most < T) freed = at::cat({freed, at::zeros({KV, T - most}, freed.options())}, 1);
  return (t - k + first_fresh) * mask_not(takes_freed) + freed * takes_freed;
}

void DeviceCells::append(const at::Tensor& slots, const at::Tensor& key_norms) {
  const int64_t KV = kv_heads(), T = slots.size(1);
  const bool uniform = std::all_of(sizes_.begin(), sizes_.end(), [&](int64_t n) { return n == sizes_.front(); });
  if (uniform) {
    order_.narrow(1, sizes_.front(), T).copy_(slots);
  } else {
    order_.scatter_(1, per_head_tensor(sizes_, device()).unsqueeze(1) + at::arange(T, long_options(device())).unsqueeze(0), slots);
  }
  at::Tensor fresh = new_token_.expand({KV, T, kFields}).clone();
  fresh.select(2, kKeyNorm).copy_(key_norms.to(at::kFloat));  // float32 norms, as the host path stores them
  cells_.scatter_(1, slots.unsqueeze(2).expand({KV, T, kFields}), fresh);
  for (size_t h = 0; h < sizes_.size(); ++h) {
    free_[h] -= std::min(T, free_[h]);
    sizes_[h] += T;
  }
}

void DeviceCells::observe(const at::Tensor& summed, const at::Tensor& last, const at::Tensor& slot_positions,
                          const at::Tensor& first_new_position, int64_t queries) {
  const int64_t S = summed.size(1);
  const at::Tensor used = cells_.narrow(1, 0, S);
  used.select(2, kAttentionSum).add_(summed);
  used.select(2, kLastAttention).copy_(last);
  // Queries of this call that could see a slot: all of them for older tokens; for a token
  // of this call, itself and the ones after it (one query sees every slot). Slots holding no
  // token are reset on reuse.
  if (queries == 1) {
    used.select(2, kSteps).add_(1.0);
  } else {
    used.select(2, kSteps).add_(queries - (slot_positions - first_new_position).clamp_min(0));
  }
}

void DeviceCells::apply(const DeviceDecision& d, at::Tensor& values) {
  const int64_t KV = kv_heads(), cap = capacity();
  if (d.kinds.size() != sizes_.size()) fail("internal: ", d.kinds.size(), " device decisions for ", sizes_.size(), " KV heads");
  std::vector<int64_t> acting, merging, adding_head, adding_column;
  for (int64_t h = 0; h < KV; ++h) {
    const Decision::Kind kind = d.kinds[static_cast<size_t>(h)];
    if (kind == Decision::None) continue;
    acting.push_back(h);
    if (kind == Decision::ConvexMerge) merging.push_back(h);
    if (kind == Decision::AdditiveMerge)
      for (int64_t n = 0; n < d.target_counts[static_cast<size_t>(h)]; ++n) {
        adding_head.push_back(h);
        adding_column.push_back(n);
      }
  }
  if (acting.empty()) return;
  const at::Device dev = device();
  const at::Tensor victim_slot = order_.gather(1, d.victim.view({KV, 1})).view({KV});
  // The heads in `list`, and the per-head tensor x restricted to them (no copy when all act).
  auto heads = [&](const std::vector<int64_t>& list) { return static_cast<int64_t>(list.size()) == KV ? head_index_ : upload(list, dev); };
  auto of = [&](const at::Tensor& x, const std::vector<int64_t>& list, const at::Tensor& h) {
    return static_cast<int64_t>(list.size()) == KV ? x : x.index({h});
  };
  // Every merge reads values before any is written back, and in float32: the same float
  // operations as PolicyCache's host path (methods §3, Eq. 4).
  if (!merging.empty()) {
    const at::Tensor h = heads(merging);
    const at::Tensor j = of(victim_slot, merging, h);
    const at::Tensor r = of(order_.gather(1, d.receiver.view({KV, 1})).view({KV}), merging, h);
    const at::Tensor w = of(d.weight, merging, h).to(at::kFloat).unsqueeze(1);
    const at::Tensor vj = values.index({h, j}).to(at::kFloat), vr = values.index({h, r}).to(at::kFloat);
    values.index_put_({h, r}, (w * vj + (1 - w) * vr).to(values.scalar_type()));
    field(kMultiplicity).index_put_({h, r}, field(kMultiplicity).index({h, j}), /*accumulate=*/true);  // r takes over j's tokens
  }
  if (!adding_head.empty()) {
    const at::Tensor h = upload(adding_head, dev), n = upload(adding_column, dev);
    const at::Tensor j = victim_slot.index({h});
    const at::Tensor sc = d.scale.index({h});
    // A head whose draw said drop (scale 0) adds into its victim's own slot, which leaves
    // below: its targets stay bit for bit what they were, whatever the victim's value holds.
    const at::Tensor merges = sc.ne(0.0);
    const at::Tensor t = order_.index({h, d.targets.index({h, n})}) * merges + j * mask_not(merges);
    values.index_put_({h, t}, (sc.to(at::kFloat).unsqueeze(1) * values.index({h, j}).to(at::kFloat)).to(values.scalar_type()),
                      /*accumulate=*/true);
  }
  const at::Tensor h = heads(acting);
  const at::Tensor j = of(victim_slot, acting, h);
  field(kFreed).index_put_({h, j}, at::full({}, static_cast<double>(decisions_++), cells_.options()));
  field(kLive).index_put_({h, j}, at::zeros({}, cells_.options()));
  // Each acting head's order closes the gap its victim left; other heads keep theirs.
  at::Tensor gap = d.victim;
  if (static_cast<int64_t>(acting.size()) < KV) {
    std::vector<int64_t> past_end(static_cast<size_t>(KV), cap);
    for (const int64_t a : acting) past_end[static_cast<size_t>(a)] = 0;
    gap = d.victim + per_head_tensor(past_end, dev);
  }
  order_ = order_.gather(1, (slot_index_ + slot_index_.ge(gap.view({KV, 1}))).clamp_max(cap - 1));
  for (const int64_t a : acting) {
    --sizes_[static_cast<size_t>(a)];
    ++free_[static_cast<size_t>(a)];
  }
}

DeviceCells DeviceCells::clone() const {
  DeviceCells c = *this;
  c.order_ = order_.clone();
  c.cells_ = cells_.clone();
  return c;
}

std::vector<HeadCells> DeviceCells::to_host(const at::Tensor& slot_positions) const {
  const at::Tensor positions = host(slot_positions), order = host(order_), cells = host(cells_);
  const int64_t cap = capacity();
  std::vector<HeadCells> out;
  for (int64_t h = 0; h < kv_heads(); ++h) {
    HeadCells::Parts p;
    const int64_t* o = order.data_ptr<int64_t>() + h * cap;
    for (int64_t i = 0; i < sizes_[static_cast<size_t>(h)]; ++i) p.order.push_back(SlotId{static_cast<int32_t>(o[i])});
    const double* c = cells.data_ptr<double>() + h * cap * kFields;
    const int64_t* pos = positions.data_ptr<int64_t>() + h * cap;
    std::vector<std::pair<double, int64_t>> stamps;
    for (int64_t s = 0; s < cap; ++s) {
      const double* f = c + s * kFields;
      if (f[kFreed] >= 0) stamps.emplace_back(f[kFreed], s);
      p.acc.push_back(f[kAttentionSum]);
      p.last.push_back(f[kLastAttention]);
      p.steps.push_back(static_cast<int64_t>(f[kSteps]));
      p.mult.push_back(static_cast<int64_t>(f[kMultiplicity]));
      p.norm.push_back(static_cast<float>(f[kKeyNorm]));
      p.position.push_back(pos[s]);
    }
    std::sort(stamps.begin(), stamps.end());
    for (const auto& [stamp, slot] : stamps) p.free.push_back(SlotId{static_cast<int32_t>(slot)});
    if (static_cast<int64_t>(p.free.size()) != free_[static_cast<size_t>(h)]) {
      fail("internal: device cache head ", h, " has ", p.free.size(), " freed slots, its count says ", free_[static_cast<size_t>(h)]);
    }
    out.push_back(HeadCells::from_parts(std::move(p)));
  }
  return out;
}

std::vector<Decision> DeviceDecision::to_host() const {
  const size_t KV = kinds.size();
  std::vector<Decision> out(KV);
  const at::Tensor v = host(victim);
  const at::Tensor r = receiver.defined() ? host(receiver) : at::Tensor();
  const at::Tensor w = weight.defined() ? host(weight.to(at::kDouble)) : at::Tensor();
  const at::Tensor t = targets.defined() ? host(targets) : at::Tensor();
  const at::Tensor sc = scale.defined() ? host(scale.to(at::kDouble)) : at::Tensor();
  for (size_t h = 0; h < KV; ++h) {
    const auto i = static_cast<int64_t>(h);
    const int victim_index = static_cast<int>(v.data_ptr<int64_t>()[i]);
    switch (kinds[h]) {
      case Decision::None: break;
      case Decision::Drop: out[h] = Decision::drop(victim_index); break;
      case Decision::ConvexMerge:
        out[h] = Decision::convex_merge(victim_index, static_cast<int>(r.data_ptr<int64_t>()[i]), w.data_ptr<double>()[i]);
        break;
      case Decision::AdditiveMerge: {
        out[h] = Decision::drop(victim_index);
        const double s = sc.data_ptr<double>()[i];
        if (s == 0.0) break;  // the draw said drop
        out[h].kind = Decision::AdditiveMerge;
        out[h].scale = s;
        for (int64_t n = 0; n < target_counts[h]; ++n) out[h].targets.push_back(static_cast<int>(t.data_ptr<int64_t>()[i * t.size(1) + n]));
        break;
      }
    }
  }
  return out;
}

DeviceDecision DeviceDecision::drops(at::Tensor victim) {
  DeviceDecision d;
  d.kinds.assign(static_cast<size_t>(victim.size(0)), Decision::Drop);
  d.victim = std::move(victim);
  return d;
}

DeviceDecision DeviceDecision::from_host(const std::vector<Decision>& decisions, at::Device device) {
  DeviceDecision d;
  std::vector<int64_t> victim, receiver;
  std::vector<double> weight, scale;
  size_t widest = 1;
  for (const Decision& x : decisions) widest = std::max(widest, x.targets.size());
  std::vector<int64_t> targets;
  for (const Decision& x : decisions) {
    d.kinds.push_back(x.kind);
    victim.push_back(std::max(0, x.victim));
    receiver.push_back(std::max(0, x.receiver));
    weight.push_back(x.weight);
    scale.push_back(x.scale);
    d.target_counts.push_back(x.kind == Decision::AdditiveMerge ? static_cast<int64_t>(x.targets.size()) : 0);
    for (size_t n = 0; n < widest; ++n) targets.push_back(n < x.targets.size() ? x.targets[n] : 0);
  }
  d.victim = upload(victim, device);
  d.receiver = upload(receiver, device);
  d.weight = upload(weight, device);
  d.scale = upload(scale, device);
  d.targets = upload(targets, device).view({static_cast<int64_t>(decisions.size()), static_cast<int64_t>(widest)});
  return d;
}

at::Tensor aggregate_query_heads(const at::Tensor& probs, int64_t kv_heads, AttentionAggregation aggregation) {
  const at::Tensor grouped = probs.view({kv_heads, probs.size(0) / kv_heads, probs.size(1), probs.size(2)}).to(at::kDouble);
  switch (aggregation) {
    case AttentionAggregation::Mean: return sum_in_order(grouped, 1) / static_cast<double>(grouped.size(1));
    case AttentionAggregation::Sum: return sum_in_order(grouped, 1);
    case AttentionAggregation::Max: return std::get<0>(grouped.max(1));
  }
  fail("internal: unknown attention aggregation");
}

at::Tensor convex_share(const at::Tensor& x, const at::Tensor& y) {
  const at::Tensor total = x + y;
  return (x / total).masked_fill(mask_not(total.gt(0)), 0.5);
}

at::Tensor cosine_similarity_rows(const at::Tensor& a_in, const at::Tensor& b_in) {
  // In the host loop's order, so the two paths round alike.
  auto sum_last = [](const at::Tensor& t) { return sum_in_order(t, -1); };
  const at::Tensor a = a_in.to(at::kDouble), b = b_in.to(at::kDouble);
  const at::Tensor na = sum_last(a * a), nb = sum_last(b * b);
  const at::Tensor norms = na * nb;
  return (sum_last(a * b) / norms.sqrt()).masked_fill(mask_not(na.gt(0) & nb.gt(0)), 0.0);
}

at::Tensor argmin_near_on_device(const at::Tensor& scores, const at::Tensor& region, double relative) {
  const double inf = std::numeric_limits<double>::infinity();
  // The host rule skips NaN (no comparison with it holds) and never looks outside the region.
  const at::Tensor s = scores.masked_fill(mask_not(region) | scores.ne(scores), inf);
  const at::Tensor best = s.amin(1, /*keepdim=*/true);
  const at::Tensor magnitude = best.clamp_min(0) - best.clamp_max(0);  // |best| (abs has no meta kernel in LibTorch 1.13)
  const at::Tensor near = s.le(best + relative * magnitude) & region;
  // argmax returns the first of equal maxima: the earliest near-lowest token (2 + 1), or,
  // where no score is finite enough to compare (the host rule's case), the region's first (1).
  return at::argmax(near.to(at::kInt).mul_(2).add_(region), 1);
}

}  // namespace kvscope
