#pragma once
// The bookkeeping of one layer of a budgeted cache held as tensors on the model's device,
// so that a decode step on a GPU never waits for the host (methods §2.10). It holds the same
// per-slot quantities as HeadCells (which the host path keeps in vectors) for all KV heads
// at once, and the sequence order as a tensor of slot ids. The per-slot quantities share one
// float64 tensor [kv_heads, capacity, fields] (integers and float32 norms are exact in it), so
// a new token's fields are one scatter and a decision's reads one gather: on a GPU every
// tensor operation is a kernel launch the host pays for.
//
// What stays on the host is only what does not depend on tensor data: how many tokens each
// head holds and how many freed slots it has. Every decision removes exactly one token from
// each head over budget, so these counts, the layer's used slots and every region bound
// ([sinks, size - recent)) follow from the call sequence alone.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "cache/head_cells.h"
#include "cache/merge_weighting.h"
#include "cache/policy.h"
#include "model/device.h"

namespace kvscope {

// A [kv_heads] int64 tensor on `device` from host values: a fill when all are equal (no
// copy at all), else upload() (model/device.h).
at::Tensor per_head_tensor(const std::vector<int64_t>& values, at::Device device);
// The sum over dimension `dim`, added one element after another from 0 as the host loops do
// (ATen's sum splits long or narrow reductions into interleaved partial sums).
at::Tensor sum_in_order(const at::Tensor& x, int64_t dim);

struct DeviceDecision;

// Elementwise not of a bool tensor (logical_not has no meta kernel in LibTorch 1.13, and the
// meta device is how the tests prove this path reads no data on the host).
inline at::Tensor mask_not(const at::Tensor& mask) { return mask.eq(false); }

class DeviceCells {
 public:
  DeviceCells() = default;
  DeviceCells(int64_t kv_heads, at::Device device);

  int64_t kv_heads() const { return static_cast<int64_t>(sizes_.size()); }
  int64_t capacity() const { return order_.defined() ? order_.size(1) : 0; }
  at::Device device() const { return order_.device(); }
  // Tokens per head and freed slots per head (host values; see the file comment).
  const std::vector<int64_t>& sizes() const { return sizes_; }
  const std::vector<int64_t>& free_counts() const { return free_; }

  // The fields of the per-slot tensor.
  enum Field : int64_t { kAttentionSum, kLastAttention, kSteps, kMultiplicity, kKeyNorm, kFreed, kLive, kFields };

  // int64 [kv_heads, capacity]: the slot at each sequence index (stale past a head's size).
  const at::Tensor& order() const { return order_; }
  // Per-slot quantities as float64 views [kv_heads, capacity]; entries of slots that hold no
  // token are stale.
  at::Tensor field(Field f) const { return cells_.select(2, f); }
  at::Tensor attention_sum() const { return field(kAttentionSum); }    // a
  at::Tensor last_attention() const { return field(kLastAttention); }  // the last query's, aggregated
  at::Tensor steps() const { return field(kSteps); }                   // n
  at::Tensor multiplicity() const { return field(kMultiplicity); }
  at::Tensor key_norm() const { return field(kKeyNorm); }              // float32 values
  at::Tensor live() const { return field(kLive).gt(0.5); }             // bool

  // A per-slot quantity [kv_heads, capacity] (or [kv_heads, capacity, d]) in sequence
  // order: entry i of head h is the quantity of the head's i-th token.
  at::Tensor in_order(const at::Tensor& per_slot) const;
  // Every field in sequence order, [kv_heads, capacity, kFields]: one gather for a decision
  // that reads several (select(2, field) picks one).
  at::Tensor fields_in_order() const { return in_order(cells_); }
  // [kv_heads, capacity] bool: sequence indices inside each head's [begin, end).
  at::Tensor region_mask(const std::vector<int64_t>& begin, const std::vector<int64_t>& end) const;

  void reserve(int64_t capacity);
  // Slots for T new tokens per head, [kv_heads, T]: freed slots first, most recently freed
  // first (HeadCells::take_free_slot's order), then fresh ones from `first_fresh` on.
  // `fresh_end` receives one past the last fresh slot taken (first_fresh if none).
  at::Tensor take_slots(int64_t T, int64_t first_fresh, int64_t* fresh_end) const;
  // The new tokens enter the slots take_slots chose, at the end of each head's order.
  void append(const at::Tensor& slots, const at::Tensor& key_norms);
  // One forward call's attention, aggregated over each KV head's query heads: `summed`
  // [kv_heads, S] over the call's queries and `last` [kv_heads, S] of its last query. A slot
  // of this call's tokens was visible to the queries from its own position on.
  void observe(const at::Tensor& summed, const at::Tensor& last, const at::Tensor& slot_positions,
               const at::Tensor& first_new_position, int64_t queries);
  // Applies one decision per head to the metadata and to the layer's value store.
  void apply(const DeviceDecision& d, at::Tensor& values);

  DeviceCells clone() const;
  // The same state as host HeadCells, one per KV head, with the slots' positions
  // [kv_heads, capacity] (reads the device: for tests, diagnostics and decisions outside a
  // step, never inside one).
  std::vector<HeadCells> to_host(const at::Tensor& slot_positions) const;

 private:
  at::Tensor order_;
  at::Tensor cells_;  // [kv_heads, capacity, kFields]; kFreed: the decision count when the slot was freed, or -1
  at::Tensor slot_index_;   // int64 [1, capacity]: 0, 1, ... (built once per capacity)
  at::Tensor head_index_;   // int64 [kv_heads]: 0, 1, ...
  at::Tensor new_token_;    // float64 [kFields]: a new token's fields, its key norm aside
  std::vector<int64_t> sizes_, free_;
  int64_t decisions_ = 0;
  // The last region asked for: in steady decoding every step asks for the same one.
  mutable std::vector<int64_t> region_begin_, region_end_;
  mutable at::Tensor region_;
};

// What a decision may read on the device path: the layer's metadata, the stored keys and the
// attention of the query that brought the layer over budget.
struct DeviceStep {
  const DeviceCells& cells;
  const at::Tensor& keys;        // [kv_heads, capacity, head_dim], as stored
  at::Tensor last_query;         // [query_heads, S] float32, or undefined outside a forward call
  int64_t query_heads;
};

// One decision per KV head as tensors: indices are positions in each head's sequence order.
// `kinds` is host data: it depends on the policy and on which heads are over budget only.
struct DeviceDecision {
  std::vector<Decision::Kind> kinds;  // per head; None: the head is left alone
  at::Tensor victim;                  // [kv_heads] int64
  at::Tensor receiver;                // ConvexMerge: [kv_heads] int64
  at::Tensor weight;                  // ConvexMerge: [kv_heads] float64, V[r] = w V[j] + (1 - w) V[r]
  at::Tensor targets;                 // AdditiveMerge: [kv_heads, N] int64
  std::vector<int64_t> target_counts; // AdditiveMerge: the first target_counts[h] columns of head h are used
  at::Tensor scale;                   // AdditiveMerge: [kv_heads] float64, each V[t] += scale V[j] (0: dropped)

  // Every head drops its token at victim[h].
  static DeviceDecision drops(at::Tensor victim);
  // The same decisions as host Decisions (reads the device).
  std::vector<Decision> to_host() const;
  static DeviceDecision from_host(const std::vector<Decision>& decisions, at::Device device);
};

// MergeCandidate for every KV head: [kv_heads] float64 tensors, keys [kv_heads, head_dim]
// float32 (defined only for weightings whose needs_keys() is true).
struct MergeCandidateTensors {
  at::Tensor acc_j, acc_r, count_j, count_r, mult_j, mult_r, current_j, current_r, key_norm_j, key_norm_r;
  at::Tensor key_j, key_r;
};

// x / (x + y), or 1/2 where x + y is not positive: the convex share of the built-in
// weightings, elementwise.
at::Tensor convex_share(const at::Tensor& x, const at::Tensor& y);
// cosine_similarity (merge_weighting.h) along the last dimension of two broadcastable float
// tensors: float64, summed in the same order as the host loop, 0 where a norm is 0.
at::Tensor cosine_similarity_rows(const at::Tensor& a, const at::Tensor& b);

// Attention probabilities [heads, T, S] aggregated over each KV head's query heads
// (methods §2.1), in float64 so decisions do not hinge on float32 summation order:
// [kv_heads, T, S].
at::Tensor aggregate_query_heads(const at::Tensor& probabilities, int64_t kv_heads, AttentionAggregation aggregation);

// argmin of `scores` [kv_heads, n] (float64) within `region` per row, with the host rule's
// tolerance: scores within `relative` of the row's lowest count as equal and the earliest
// wins (CachePolicy::argmin_near, methods §2.2). Returns [kv_heads] int64.
at::Tensor argmin_near_on_device(const at::Tensor& scores, const at::Tensor& region, double relative);

}  // namespace kvscope
