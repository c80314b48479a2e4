#pragma once
// Cache policies: which token leaves a budgeted cache each step and what happens to its
// value. A policy only decides; PolicyCache applies the decision to the tensors. Policies
// live one per file in cache/policies/ and register themselves by name with their traits
// (policy_registry.h); docs/methods.md §2 gives each rule's equations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cache/head_cells.h"
#include "cache/merge_weighting.h"

namespace kvscope {

enum class AttentionAggregation { Mean, Sum, Max };  // query heads -> their KV head (methods §2.1)

struct Decision {
  enum Kind { None, Drop, ConvexMerge, AdditiveMerge } kind = None;
  int victim = -1;        // index into the head's sequence order
  int receiver = -1;      // ConvexMerge: index into the order; Drop: the token a merge would have chosen, or -1
  double weight = 0.0;    // ConvexMerge: V[r] = w V[j] + (1-w) V[r]
  std::vector<int> targets;  // AdditiveMerge: indices into the order, each V[t] += scale V[j]
  double scale = 0.0;

  static Decision drop(int victim) {
    Decision d;
    d.kind = Drop;
    d.victim = victim;
    return d;
  }
  static Decision convex_merge(int victim, int receiver, double weight) {
    Decision d = drop(victim);
    d.kind = ConvexMerge;
    d.receiver = receiver;
    d.weight = weight;
    return d;
  }
};

// The device path's view of a layer and its decisions (cache/device_cells.h).
struct DeviceStep;
struct DeviceDecision;

struct PolicyOptions {
  int64_t budget = 0;
  int64_t sinks = 4;
  int64_t recent = -1;  // -1: the policy's default split (PolicyTraits::recent_default)
  uint64_t seed = 0;
  std::vector<int> skip_layers;                     // layers never compressed
  int64_t cam_merge_count = 16;                     // cam: values receiving each evicted value
  std::string weighting = "avg-attention";           // weightedkv
  MergeReceiver receiver = MergeReceiver::Right;     // weightedkv
  bool neighbour_in_middle = false;                  // weightedkv: receiver must be a middle token too
};

// What a decision may read besides the cells: stored keys (copied to the host on demand)
// and the attention of the step's query that brought the layer over budget.
class StepView {
 public:
  virtual ~StepView() = default;
  virtual std::vector<float> key(int kv_head, SlotId slot) const = 0;
  // All slots of one head, row-major [capacity, head_dim].
  virtual std::vector<float> keys(int kv_head, int64_t* head_dim) const = 0;
  // The last query's attention probabilities from query head `query_head` to every slot of
  // its KV head, indexed by slot (float32). Unavailable (an error) for decisions made
  // outside a forward call.
  virtual const float* attention_row(int query_head) const = 0;
  virtual int query_heads() const = 0;
};

class CachePolicy {
 public:
  // `options` are already validated and resolved (recent filled in) by make_policy.
  explicit CachePolicy(const PolicyOptions& options) : options_(options) {}
  virtual ~CachePolicy() = default;
  virtual bool compresses_layer(int layer) const;
  // One layer is over budget by one token: decide, per KV head, what leaves.
  virtual void decide(int layer, const std::vector<HeadCells>& heads, const StepView& step, std::vector<Decision>& out) = 0;
  // The same rule as `decide` as tensor operations on the cache's device, reading no tensor
  // data on the host (methods §2.10): fills out.victim (and the merge fields) and
  // out.kinds for every head. Returns false when the policy has no device form; the cache
  // then copies its state to the host and calls `decide`.
  virtual bool decide_on_device(int layer, const DeviceStep& step, DeviceDecision& out);
  int64_t recent() const { return options_.recent; }
  int64_t sinks() const { return options_.sinks; }
  const PolicyOptions& options() const { return options_; }

 protected:
  // The tokens a policy may evict: [begin, end) in sequence order, between the sinks and
  // the recent window (at least `min_recent` recent tokens are protected).
  struct Region {
    int begin, end;
  };
  Region middle(const HeadCells& h, int64_t min_recent = 0) const { return middle(h.size(), min_recent); }
  Region middle(int64_t head_size, int64_t min_recent = 0) const {
    return Region{static_cast<int>(options_.sinks), static_cast<int>(head_size - std::max(options_.recent, min_recent))};
  }
  // middle() of every head, as the two bound vectors the device path's region masks take.
  struct Bounds {
    std::vector<int64_t> begin, end;
  };
  Bounds middle_bounds(const std::vector<int64_t>& head_sizes, int64_t min_recent = 0) const {
    Bounds b;
    for (const int64_t n : head_sizes) {
      const Region r = middle(n, min_recent);
      b.begin.push_back(r.begin);
      b.end.push_back(r.end);
    }
    return b;
  }
  // argmin for scores computed from the cache's keys or attention: scores within `relative`
  // of the lowest count as equal and the earliest of them wins. A prefill chunk computes keys
  // and attention with matrix products of many rows, a decode step with one row, and the two
  // round differently (float32, ~1e-7 relative); exact comparison would break ties and
  // near-ties (repeated tokens) differently in the two paths (methods §2.2).
  template <typename Score>
  static int argmin_near(Region r, Score score, double relative = kScoreTolerance) {
    // Each score once: some (TOVA's) read every query head.
    std::vector<double> scores;
    scores.reserve(static_cast<size_t>(std::max(0, r.end - r.begin)));
    double best = std::numeric_limits<double>::infinity();
    for (int i = r.begin; i < r.end; ++i) {
      scores.push_back(score(i));
      best = std::min(best, scores.back());
    }
    const double limit = best + relative * std::abs(best);
    for (size_t k = 0; k < scores.size(); ++k)
      if (scores[k] <= limit) return r.begin + static_cast<int>(k);
    return r.begin;
  }
  // Well above float32 rounding, well below the score differences that decide anything.
  static constexpr double kScoreTolerance = 1e-5;

  const PolicyOptions options_;
};

}  // namespace kvscope
