#pragma once
// Cache policies: which token leaves a budgeted cache each step and what happens to its
// value. A policy only decides; PolicyCache applies the decision to the tensors.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cache/merge_weighting.h"

namespace kvscope {

enum class AttentionAggregation { Mean, Sum, Max };  // query heads -> their KV head

// Host-side bookkeeping of one (layer, KV head), kept next to the slots it describes.
struct HeadState {
  std::vector<int32_t> order;  // slot ids in sequence order
  std::vector<int64_t> position;   // per slot: original token position
  std::vector<double> acc;         // per slot: accumulated attention
  std::vector<int64_t> count;      // per slot: steps attended to
  std::vector<int64_t> mult;       // per slot: original tokens merged into it (1 = itself)
  std::vector<float> key_norm;     // per slot
  std::vector<double> current;       // per slot: the last query's attention, aggregated over the group
  std::vector<double> current_mean;  // per slot: the same, always averaged over the group (TOVA)
};

struct Decision {
  enum Kind { None, Drop, ConvexMerge, AdditiveMerge } kind = None;
  int victim = -1;        // index into order
  int receiver = -1;      // ConvexMerge: index into order
  double weight = 0.0;    // ConvexMerge: V[r] = w V[j] + (1-w) V[r]
  std::vector<int> targets;  // AdditiveMerge: indices into order, each V[t] += scale V[j]
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

struct PolicyOptions {
  int64_t budget = 0;
  int64_t sinks = 4;
  int64_t recent = -1;  // -1: the policy's default split (see default_recent)
  uint64_t seed = 0;
  std::vector<int> skip_layers;                     // knorm: layers never compressed
  int64_t cam_merge_count = 16;                     // cam: values receiving each evicted value
  std::string weighting = "avg-attention";           // weightedkv
  MergeReceiver receiver = MergeReceiver::Right;     // weightedkv
  bool neighbour_in_middle = false;                  // weightedkv: receiver must be a middle token too
};

// Supplies stored keys to decisions that need them (copied to the host on demand).
class KeySource {
 public:
  virtual ~KeySource() = default;
  virtual std::vector<float> key(int head, int slot) const = 0;
  // All slots of one head, row-major [slots, head_dim].
  virtual std::vector<float> keys(int head, int64_t* head_dim) const = 0;
};

class CachePolicy {
 public:
  virtual ~CachePolicy() = default;
  virtual const std::string& name() const = 0;
  virtual bool compresses_layer(int layer) const { (void)layer; return true; }
  // One layer is over budget by one token: decide, per KV head, what leaves.
  virtual void decide(int layer, const std::vector<HeadState>& heads, const KeySource& keys, std::vector<Decision>& out) = 0;
  int64_t recent() const { return recent_; }
  int64_t sinks() const { return sinks_; }

 protected:
  int64_t sinks_ = 0, recent_ = 0;
};

// Creates a policy by name; errors list the known names and invalid splits.
std::unique_ptr<CachePolicy> make_policy(const std::string& name, const PolicyOptions& options);
std::vector<std::string> known_policies();
// Recent window a policy uses when --recent is not given: StreamingLLM and CaM keep
// budget - sinks recent tokens; the selecting policies keep budget/2 - sinks (spec 2.3).
int64_t default_recent(const std::string& policy, int64_t budget, int64_t sinks);

}  // namespace kvscope
