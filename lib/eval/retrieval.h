#pragma once
// One retrieval cell (methods §7): a prompt fed through a budgeted cache, compressed either
// once after the prompt (kvpress's and the L2 paper's setting) or token by token as `ppl`
// does, then the answer decoded greedily and scored teacher-forced.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "cache/policy_cache.h"
#include "eval/ppl.h"

namespace kvscope {

class LlamaModel;

enum class CompressAt {
  Prefill,  // the whole prompt with full attention, then one cut to the budget by the policy's scores
  Decode,   // prefill up to the budget, then one token per step, each step back to the budget
};
CompressAt parse_compress_at(const std::string& name);
const char* compress_at_name(CompressAt at);

struct RetrievalOutcome {
  std::vector<int64_t> generated;   // greedy tokens after the prompt
  std::vector<double> answer_nll;   // teacher-forced, one per answer token
  int64_t budget = 0;               // resolved against the prompt's length
  int64_t cache_after_prompt = 0;   // the most tokens a (layer, KV head) holds once the prompt is in
  double seconds = 0.0;
};

// A prompt fed whole with full attention and held uncut: every --compress prefill cell of
// the prompt starts from a copy of it (the cut is all that differs between them).
struct PrefilledPrompt {
  std::unique_ptr<PolicyCache> cache;
  at::Tensor logits;  // [1, V] after the prompt's last token
  PositionMode positions;
  AttentionAggregation aggregation;
};
PrefilledPrompt prefill_prompt(const LlamaModel& model, const std::vector<int64_t>& prompt, const RunConfig& config);

// Greedy decoding stops after `max_new_tokens` or at a token in `stop_tokens`. After the
// prompt every step keeps the cache at its budget (one decision per step). A ratio budget
// resolves against the prompt's length.
RetrievalOutcome run_retrieval(const LlamaModel& model, const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer,
                               const RunConfig& config, CompressAt at, int64_t max_new_tokens,
                               const std::vector<int64_t>& stop_tokens, const PrefilledPrompt* prefilled = nullptr);

}  // namespace kvscope
