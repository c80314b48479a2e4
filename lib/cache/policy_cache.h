#pragma once
// A KV cache held to a budget by a policy. Slots are physically stable: the slot a token
// leaves is refilled by the next token, so a decode step never copies the cache; sequence
// order lives in per-head metadata (HeadCells). Every (layer, KV head) has its own token set
// and bookkeeping: original position, accumulated attention, step count, merge multiplicity
// and key norm. The heads of a layer may hold different numbers of tokens (a decision may
// leave some heads alone): attention reads the slots [0, used) of every head and masks the
// ones a head does not hold, and policies that keep one token set per layer refuse such a
// layer by name.
#include <ATen/ATen.h>

#include <limits>
#include <memory>
#include <vector>

#include "cache/device_cells.h"
#include "cache/policy.h"
#include "cache/policy_registry.h"
#include "cache/position_mode.h"
#include "model/kv_cache.h"

namespace kvscope {

class Rope;

// When the policy brings a layer back to its budget.
enum class Compression {
  EachCall,  // after every forward call; a call may add at most one token over the budget (decoding)
  Hold,      // never: the cache grows past its budget (a prompt fed whole before cut_to_budget)
};

// Where the cache keeps its bookkeeping and makes its decisions (methods §2.10).
enum class CacheBookkeeping {
  Auto,    // on the device for a GPU cache, on the host for a CPU one (the faster on each)
  Host,    // HeadCells vectors and host loops; attention rows are copied to the host
  Device,  // DeviceCells tensors on the cache's device; no tensor data is read on the host
};

struct PolicyCacheConfig {
  int64_t num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  PositionMode positions = PositionMode::Original;
  AttentionAggregation aggregation = AttentionAggregation::Mean;
  CacheBookkeeping bookkeeping = CacheBookkeeping::Auto;
};

// Receives every decision after it is made, before it is applied (for diagnostics such as
// the one-step perturbation log): the layer's value store [kv_heads, slots, hd] and the
// step's attention probabilities [heads, T, slots].
class DecisionObserver {
 public:
  virtual ~DecisionObserver() = default;
  virtual void on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions,
                            const at::Tensor& values, const at::Tensor& probabilities) = 0;
};

// Forwards every decision to several observers, in the order they were added.
class DecisionObservers final : public DecisionObserver {
 public:
  void add(DecisionObserver* o) { observers_.push_back(o); }
  void clear() { observers_.clear(); }
  bool empty() const { return observers_.empty(); }
  void on_decisions(int layer, const std::vector<HeadCells>& heads, const std::vector<Decision>& decisions, const at::Tensor& values,
                    const at::Tensor& probabilities) override {
    for (DecisionObserver* o : observers_) o->on_decisions(layer, heads, decisions, values, probabilities);
  }

 private:
  std::vector<DecisionObserver*> observers_;
};

class PolicyCache final : public KvCache {
 public:
  PolicyCache(const PolicyCacheConfig& config, std::shared_ptr<CachePolicy> policy, const Rope& rope, int64_t budget);

  AttentionInputs append(int layer, const NewEntries& entries) override;
  void observe_attention(int layer, const at::Tensor& probabilities) override;
  int64_t size(int layer) const override;

  PolicyCache(PolicyCache&&) = default;
  PolicyCache& operator=(PolicyCache&&) = default;

  // Deep copy (the policy object is shared: copies of a cache made mid-run share its RNG).
  PolicyCache clone() const;
  void set_decision_observer(DecisionObserver* o) { decision_observer_ = o; }
  void set_compression(Compression c) { compression_ = c; }
  // Brings every compressed layer down to `budget` under `policy` (which replaces the
  // cache's own), one decision at a time, each seeing the cache as the previous ones left it
  // and the attention of the last query of the last forward call (methods §2.9). For a
  // cache that held a whole prompt (Compression::Hold); compression is EachCall afterwards.
  void cut_to_budget(std::shared_ptr<CachePolicy> policy, int64_t budget);

  // One head's bookkeeping (on the device path, a host copy made on demand).
  const HeadCells& cells(int layer, int head) const { return host_heads(layer)[static_cast<size_t>(head)]; }
  bool bookkeeping_on_device() const { return on_device_; }
  // Checks every head's metadata invariants (HeadCells::check_invariants).
  void check_invariants() const;
  // Original positions of the tokens one head keeps, in sequence order.
  std::vector<int64_t> kept_positions(int layer, int head) const;
  // Stored value of one kept token (by index in sequence order), on the host.
  std::vector<float> value(int layer, int head, int index) const;
  int64_t budget() const { return budget_; }
  // Wall time spent in the cache's own work (bookkeeping, decisions, merges), excluding
  // the attention it serves: the policy's cost on top of the model step. On the device path
  // this is the host's time to issue the work, which a GPU runs asynchronously.
  double policy_seconds() const { return policy_seconds_; }
  const CachePolicy& policy() const { return *policy_; }
  // Applies decisions made outside the policy (kvscope perturb's one-off merges); one per
  // KV head, Decision::None for heads left alone.
  void apply_decisions(int layer, const std::vector<Decision>& decisions) { apply(layer, decisions); }
  // The stored keys of one layer, for decisions made outside a decode step (no attention).
  std::unique_ptr<StepView> key_source(int layer) const;
  // Keys as attention reads them (rotated) and values of one head, in sequence order.
  std::pair<at::Tensor, at::Tensor> head_keys_values(int layer, int head) const;

 private:
  struct Layer {
    at::Tensor k, v;     // [kv_heads, capacity, head_dim]: post-RoPE (Original) or pre-RoPE (InCache)
    at::Tensor pos;      // [kv_heads, capacity] int64 original positions, on the device
    int64_t used = 0;    // slots [0, used) hold live tokens at attention time
    std::vector<HeadCells> heads;
    std::vector<int64_t> new_positions;  // positions of the tokens appended last
    at::Tensor held_last_query;          // while holding: the last query's attention [heads, 1, slots]
    DeviceCells device;                  // the device path's bookkeeping (heads stays empty)
    at::Tensor first_new_position;       // the device path: position of the first token appended last, [1]
    int64_t changes = 0;                 // the device path: bumped by every change, for host_view
    mutable std::vector<HeadCells> host_view;  // the device path: heads as of host_view_changes
    mutable int64_t host_view_changes = -1;
  };
  // Where attention must not look: above every query position, so the causal mask hides it.
  static constexpr int64_t kHiddenPosition = std::numeric_limits<int64_t>::max() / 4;

  PolicyCache(const PolicyCache&) = default;  // only clone() copies
  void grow(Layer& l, int64_t needed);
  void apply(int layer, const std::vector<Decision>& decisions);
  void observe_attention_tensors(Layer& l, const at::Tensor& probabilities);
  void decide_and_apply(int layer, const at::Tensor& probabilities);
  void reduce_to_budget(int layer, const at::Tensor& probabilities);
  const std::vector<HeadCells>& host_heads(int layer) const;
  // Keys from the layer's store and, when given, attention from the call's probabilities.
  std::unique_ptr<StepView> step_view(const Layer& l, const at::Tensor* probabilities) const;
  // The device path (policy_cache_device.cpp).
  AttentionInputs append_on_device(Layer& l, const NewEntries& entries);
  void observe_on_device(Layer& l, const at::Tensor& probabilities);
  void reduce_on_device(int layer, const at::Tensor& probabilities);

  PolicyCacheConfig config_;
  std::shared_ptr<CachePolicy> policy_;
  const Rope* rope_;
  int64_t budget_;
  std::vector<Layer> layers_;
  DecisionObserver* decision_observer_ = nullptr;
  double policy_seconds_ = 0.0;
  Compression compression_ = Compression::EachCall;
  bool on_device_ = false;
};

}  // namespace kvscope
