#include "eval/retrieval.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>

#include "cache/policy_cache.h"
#include "cache/policy_registry.h"
#include "core/error.h"
#include "eval/document_run.h"
#include "eval/score.h"
#include "model/llama.h"

namespace kvscope {

CompressAt parse_compress_at(const std::string& name) {
  if (name == "prefill") return CompressAt::Prefill;
  if (name == "decode") return CompressAt::Decode;
  fail("unknown --compress '", name, "' (known: prefill, decode)");
}

const char* compress_at_name(CompressAt at) { return at == CompressAt::Prefill ? "prefill" : "decode"; }

namespace {

// Feeds prompt[from, to) in calls of at most `chunk` tokens; the logits [1, V] of the last.
at::Tensor feed(const LlamaModel& model, const at::Tensor& prompt, int64_t from, int64_t to, int64_t chunk, PolicyCache& cache) {
  at::Tensor logits;
  for (int64_t pos = from; pos < to; pos += chunk)
    logits = model.forward(prompt.narrow(0, pos, std::min(chunk, to - pos)), pos, cache, nullptr, Logits::Last);
  return logits;
}

at::Tensor token_tensor(const std::vector<int64_t>& ids) { return at::tensor(ids, at::TensorOptions().dtype(at::kLong)); }

}  // namespace

PrefilledPrompt prefill_prompt(const LlamaModel& model, const std::vector<int64_t>& prompt, const RunConfig& config) {
  const int64_t P = static_cast<int64_t>(prompt.size());
  PolicyOptions po;
  po.budget = P;
  PrefilledPrompt out{std::make_unique<PolicyCache>(policy_cache_config(model, config),
                                                    std::shared_ptr<CachePolicy>(make_policy("full", po)), model.rope(), P),
                      at::Tensor(), config.positions, config.aggregation};
  out.cache->set_compression(Compression::Hold);
  out.logits = feed(model, token_tensor(prompt), 0, P, std::max<int64_t>(1, config.prefill_chunk), *out.cache);
  return out;
}

RetrievalOutcome run_retrieval(const LlamaModel& model, const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer,
                               const RunConfig& config, CompressAt at, int64_t max_new_tokens,
                               const std::vector<int64_t>& stop_tokens, const PrefilledPrompt* prefilled) {
  const auto started = std::chrono::steady_clock::now();
  if (prompt.empty() || answer.empty()) fail("internal: a retrieval cell needs a prompt and an answer");
  const ModelConfig& c = model.config();
  const int64_t P = static_cast<int64_t>(prompt.size());
  const int64_t total = P + std::max<int64_t>(static_cast<int64_t>(answer.size()), max_new_tokens);
  const bool full = policy_info(config.policy).traits.keeps_everything;
  RetrievalOutcome out;
  out.budget = full ? total : config.budget.resolve(P);
  if ((config.positions == PositionMode::Original || full) && total > c.max_position_embeddings) {
    fail("a prompt of ", P, " tokens and its answer reach position ", total, ", beyond the model's context of ", c.max_position_embeddings,
         full ? "" : " (--positions in-cache keeps positions within the budget)");
  }
  PolicyOptions po = config.options;
  po.budget = out.budget;
  std::shared_ptr<CachePolicy> policy(make_policy(config.policy, po));
  std::unique_ptr<PolicyCache> cache;
  at::Tensor logits;
  if (at == CompressAt::Prefill) {
    // The prompt with full attention, then one cut: from the shared prefill when it matches.
    PrefilledPrompt own;
    if (!prefilled || prefilled->positions != config.positions || prefilled->aggregation != config.aggregation) {
      own = prefill_prompt(model, prompt, config);
      prefilled = &own;
    }
    cache = std::make_unique<PolicyCache>(prefilled->cache->clone());
    logits = prefilled->logits;
    cache->cut_to_budget(policy, out.budget);
  } else {
    // As ppl: chunks while no eviction can happen, then one token per step.
    cache = std::make_unique<PolicyCache>(policy_cache_config(model, config), policy, model.rope(), out.budget);
    const at::Tensor ids = token_tensor(prompt);
    const int64_t prefilled_tokens = std::min(out.budget, P);
    logits = feed(model, ids, 0, prefilled_tokens, std::max<int64_t>(1, config.prefill_chunk), *cache);
    if (prefilled_tokens < P) logits = feed(model, ids, prefilled_tokens, P, 1, *cache);
  }
  for (int64_t l = 0; l < c.num_layers; ++l) out.cache_after_prompt = std::max(out.cache_after_prompt, cache->size(static_cast<int>(l)));

  auto step = [&](PolicyCache& into, int64_t token, int64_t position) {
    return model.forward(token_tensor({token}), position, into, nullptr, Logits::Last);
  };
  {
    PolicyCache forced = cache->clone();
    at::Tensor next = logits;
    for (size_t i = 0; i < answer.size(); ++i) {
      out.answer_nll.push_back(negative_log_likelihoods(next, {answer[i]}).front());
      if (i + 1 < answer.size()) next = step(forced, answer[i], P + static_cast<int64_t>(i));
    }
  }
  at::Tensor next = logits;
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t token = next.argmax(-1).item<int64_t>();
    out.generated.push_back(token);
    if (std::find(stop_tokens.begin(), stop_tokens.end(), token) != stop_tokens.end() || i + 1 == max_new_tokens) break;
    next = step(*cache, token, P + i);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

}  // namespace kvscope
