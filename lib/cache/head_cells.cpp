#include "cache/head_cells.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace kvscope {

SlotId HeadCells::slot(int index) const {
  if (index < 0 || index >= size()) fail("internal: token index ", index, " outside a head of ", size(), " tokens");
  return order_[static_cast<size_t>(index)];
}

double HeadCells::average_attention(SlotId s) const {
  return acc_[index_of(s)] / static_cast<double>(std::max<int64_t>(1, steps_[index_of(s)]));
}

void HeadCells::reserve(int64_t capacity) {
  if (capacity <= this->capacity()) return;
  const auto n = static_cast<size_t>(capacity);
  position_.resize(n, 0);
  steps_.resize(n, 0);
  mult_.resize(n, 0);
  acc_.resize(n, 0.0);
  last_.resize(n, 0.0);
  norm_.resize(n, 0.0f);
  live_.resize(n, 0);
}

std::optional<SlotId> HeadCells::take_free_slot() {
  if (free_.empty()) return std::nullopt;
  const SlotId s = free_.back();
  free_.pop_back();
  return s;
}

void HeadCells::append(SlotId s, TokenPosition position, float key_norm) {
  const int32_t i = index_of(s);
  if (i < 0 || i >= capacity()) fail("internal: slot ", i, " outside a head of capacity ", capacity());
  if (live_[static_cast<size_t>(i)]) fail("internal: slot ", i, " already holds a token");
  live_[static_cast<size_t>(i)] = 1;
  order_.push_back(s);
  position_[static_cast<size_t>(i)] = value_of(position);
  acc_[static_cast<size_t>(i)] = 0.0;
  last_[static_cast<size_t>(i)] = 0.0;
  steps_[static_cast<size_t>(i)] = 0;
  mult_[static_cast<size_t>(i)] = 1;
  norm_[static_cast<size_t>(i)] = key_norm;
}

void HeadCells::observe(SlotId s, double added, double last, int64_t queries) {
  const auto i = static_cast<size_t>(index_of(s));
  acc_[i] += added;
  last_[i] = last;
  steps_[i] += queries;
}

void HeadCells::remove(int index, int receiver) {
  const SlotId victim = slot(index);
  if (receiver >= 0) mult_[static_cast<size_t>(index_of(slot(receiver)))] += mult_[static_cast<size_t>(index_of(victim))];
  order_.erase(order_.begin() + index);
  live_[static_cast<size_t>(index_of(victim))] = 0;
  free_.push_back(victim);
}

HeadCells HeadCells::from_parts(Parts p) {
  HeadCells h;
  const size_t n = p.position.size();
  if (p.steps.size() != n || p.mult.size() != n || p.acc.size() != n || p.last.size() != n || p.norm.size() != n) {
    fail("internal: HeadCells parts of different lengths");
  }
  h.position_ = std::move(p.position);
  h.steps_ = std::move(p.steps);
  h.mult_ = std::move(p.mult);
  h.acc_ = std::move(p.acc);
  h.last_ = std::move(p.last);
  h.norm_ = std::move(p.norm);
  h.live_.assign(n, 0);
  for (const SlotId s : p.order) {
    if (index_of(s) < 0 || static_cast<size_t>(index_of(s)) >= n) fail("internal: slot ", index_of(s), " outside a head of capacity ", n);
    h.live_[static_cast<size_t>(index_of(s))] = 1;
  }
  h.order_ = std::move(p.order);
  h.free_ = std::move(p.free);
  return h;
}

void HeadCells::check_invariants() const {
  std::vector<char> seen(live_.size(), 0);
  for (const SlotId s : order_) {
    const int32_t i = index_of(s);
    if (i < 0 || i >= capacity()) fail("cache metadata: slot ", i, " outside capacity ", capacity());
    const auto u = static_cast<size_t>(i);
    if (seen[u]) fail("cache metadata: slot ", i, " appears twice in the sequence order");
    seen[u] = 1;
    if (!live_[u]) fail("cache metadata: slot ", i, " is in the order but marked free");
    if (steps_[u] < 0) fail("cache metadata: slot ", i, " has a negative step count");
    if (mult_[u] < 1) fail("cache metadata: slot ", i, " has multiplicity ", mult_[u]);
    if (!std::isfinite(acc_[u]) || acc_[u] < 0) fail("cache metadata: slot ", i, " has accumulated attention ", acc_[u]);
    if (!std::isfinite(norm_[u])) fail("cache metadata: slot ", i, " has a non-finite key norm");
  }
  for (const SlotId s : free_) {
    const auto u = static_cast<size_t>(index_of(s));
    if (u >= live_.size() || live_[u] || seen[u]) fail("cache metadata: free slot ", index_of(s), " holds a live token");
  }
}

}  // namespace kvscope
