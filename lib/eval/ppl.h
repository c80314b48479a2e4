#pragma once
// Perplexity with a budgeted KV cache: teacher-forced, token by token, per policy and budget,
// under one of three protocols (methods §5). Until the cache first reaches its budget the
// tokens are prefilled in chunks, which leaves exactly the state decoding would (no eviction
// can happen before then); from there on every token is one decode step.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/policy.h"
#include "cache/position_mode.h"
#include "eval/perturbation_event.h"

namespace kvscope {

class LlamaModel;
class DecisionObserver;

enum class Protocol {
  Stream,   // each document is one run from an empty cache, all tokens scored
  Sliding,  // windows of `window` tokens every `stride` tokens; only new tokens scored
  Chunks,   // consecutive windows of `window` tokens, cache reset for each
};

Protocol parse_protocol(const std::string& name);
const char* protocol_name(Protocol p);

struct Window {
  int64_t begin, end;   // token range run from an empty cache
  int64_t score_from;   // first token (absolute index) whose NLL is kept; >= begin + 1
};

// The windows a protocol runs over a document of `length` tokens.
std::vector<Window> make_windows(Protocol p, int64_t length, int64_t window, int64_t stride);

struct BudgetSpec {
  int64_t tokens = 0;   // > 0: a token count
  double ratio = 0.0;   // > 0: a fraction of each evaluated window
  std::string label() const;
  int64_t resolve(int64_t window_length) const;
};
BudgetSpec parse_budget(const std::string& text);

struct RunConfig {
  std::string policy;
  BudgetSpec budget;
  PolicyOptions options;  // budget filled in per window
  PositionMode positions = PositionMode::Original;
  AttentionAggregation aggregation = AttentionAggregation::Mean;
  bool prefill = true;    // prefill until the budget is reached (false: decode every token)
  bool log_perturbation = false;
  int64_t prefill_chunk = 256;
};

struct RunOutput {
  std::vector<double> nll;            // one per scored token
  std::vector<int64_t> token_index;   // absolute index in the document of each scored token
  int64_t max_cache = 0;              // largest cache size seen in any layer
  int64_t resolved_budget = 0;        // budget of the first window
  double seconds = 0.0;
  double policy_seconds = 0.0;        // of which spent in the cache's own work
  std::vector<PerturbationEvent> perturbation;  // with RunConfig::log_perturbation
};

// Runs one policy configuration over one document.
RunOutput run_document(const LlamaModel& model, const std::vector<int64_t>& ids, const std::vector<Window>& windows,
                       const RunConfig& config, const std::function<void(int64_t)>& on_token = {},
                       DecisionObserver* decisions = nullptr);

}  // namespace kvscope
