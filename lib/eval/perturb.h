#pragma once
// kvscope perturb: how much one merge (or eviction) disturbs the attention output afterwards
// (methods §4). Decode with the full cache to step `at`; apply one WeightedKV-chosen merge per
// selected (layer, KV head) with each weighting; continue the full and the perturbed runs
// side by side, teacher-forced, and compare them at every step.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/merge_weighting.h"
#include "cache/position_mode.h"

namespace kvscope {

class LlamaModel;

inline constexpr const char* kPerturbSchemaName = "kvscope.perturb";
inline constexpr int64_t kPerturbSchemaVersion = 2;

struct PerturbOptions {
  int64_t at = 100, steps = 800;
  // Merge weightings, plus "evict" (drop the value too) and "none" (change nothing: a control).
  std::vector<std::string> variants{"avg-attention", "evict"};
  std::vector<int> layers, kv_heads;  // where merges happen and what is recorded
  int64_t sinks = 4;
  MergeReceiver receiver = MergeReceiver::Right;
  PositionMode positions = PositionMode::Original;
};

// Per variant, arrays over [steps, layers, query heads] (row-major) and [steps].
struct PerturbVariantResult {
  std::string name;
  std::vector<double> cos_output, rel_output, cos_attention_dropped, cos_attention_added;
  std::vector<double> kl;
  // [layers, kv_heads, 2]: (dropped, receiver) positions; -1 where nothing was merged. For
  // "evict" the receiver is the token the merge rule would have chosen.
  std::vector<int64_t> merged;
  std::vector<double> weights;     // [layers, kv_heads]
};

struct PerturbDocumentResult {
  std::vector<PerturbVariantResult> variants;
  double decode_seconds = 0;  // the batched forward steps of the full and every perturbed run
  double total_seconds = 0;
};

PerturbDocumentResult run_perturbation(const LlamaModel& model, const std::vector<int64_t>& ids, const PerturbOptions& options,
                                       const std::function<void(int64_t)>& on_step = {});

}  // namespace kvscope
