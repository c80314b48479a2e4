#include "eval/retrieval.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>

#include "cache/policy_cache.h"
#include "cache/policy_registry.h"
#include "core/error.h"
#include "eval/score.h"
#include "model/llama.h"

namespace kvscope {

CompressAt parse_compress_at(const std::string& name) {
  if (name == "prefill") return CompressAt::Prefill;
  if (name == "decode") return CompressAt::Decode;
  fail("unknown --compress '", name, "' (known: prefill, decode)");
}

const char* compress_at_name(CompressAt at) { return at == CompressAt::Prefill ? "prefill" : "decode"; }

RetrievalOutcome run_retrieval(const LlamaModel& model, const std::vector<int64_t>& prompt, const std::vector<int64_t>& answer,
                               const RunConfig& config, CompressAt at, int64_t max_new_tokens,
                               const std::vector<int64_t>& stop_tokens) {
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
  const PolicyCacheConfig cache_config{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, model.dtype(), model.device(),
                                       config.positions, config.aggregation};
  PolicyCache cache(cache_config, std::shared_ptr<CachePolicy>(make_policy(config.policy, po)), model.rope(), out.budget);

  const at::Tensor ids = at::tensor(prompt, at::TensorOptions().dtype(at::kLong));
  const int64_t chunk = std::max<int64_t>(1, config.prefill_chunk);
  // Prefill: every chunk goes in whole, the cache held past its budget until the last chunk,
  // after which the policy cuts it. Decode: chunks only while no eviction can happen.
  const int64_t prefilled = at == CompressAt::Prefill ? P : std::min(out.budget, P);
  at::Tensor logits;
  int64_t pos = 0;
  while (pos < prefilled) {
    const int64_t n = std::min(chunk, prefilled - pos);
    if (at == CompressAt::Prefill) cache.set_compression(pos + n < P ? Compression::Hold : Compression::CutToBudget);
    logits = model.forward(ids.narrow(0, pos, n), pos, cache, nullptr, Logits::Last);
    pos += n;
  }
  cache.set_compression(Compression::EachCall);
  for (; pos < P; ++pos) logits = model.forward(ids.narrow(0, pos, 1), pos, cache, nullptr, Logits::Last);
  for (int64_t l = 0; l < c.num_layers; ++l) out.cache_after_prompt = std::max(out.cache_after_prompt, cache.size(static_cast<int>(l)));

  auto step = [&](PolicyCache& into, int64_t token, int64_t position) {
    return model.forward(at::tensor(std::vector<int64_t>{token}, at::TensorOptions().dtype(at::kLong)), position, into, nullptr,
                         Logits::Last);
  };
  {
    PolicyCache forced = cache.clone();
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
    next = step(cache, token, P + i);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return out;
}

}  // namespace kvscope
