#include "eval/score.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "model/kv_cache.h"
#include "model/llama.h"

namespace kvscope {

double ScoreResult::mean_nll() const {
  if (nll.empty()) return 0.0;
  return std::accumulate(nll.begin(), nll.end(), 0.0) / static_cast<double>(nll.size());
}

double ScoreResult::perplexity() const { return std::exp(mean_nll()); }

at::Tensor negative_log_likelihoods(const at::Tensor& logits, const at::Tensor& targets) {
  return at::log_softmax(logits.to(at::kDouble), -1).gather(1, targets.unsqueeze(1)).squeeze(1).neg();
}

std::vector<double> negative_log_likelihoods(const at::Tensor& logits, const std::vector<int64_t>& targets) {
  const at::Tensor nll = negative_log_likelihoods(logits.to(at::kCPU), at::tensor(targets, at::kLong)).contiguous();
  return std::vector<double>(nll.data_ptr<double>(), nll.data_ptr<double>() + nll.numel());
}

ScoreResult score_tokens(const LlamaModel& model, const std::vector<int64_t>& ids, const ScoreOptions& options) {
  const int64_t T = static_cast<int64_t>(ids.size());
  if (T < 2) fail("scoring needs at least 2 tokens, got ", T);
  if (T > model.config().max_position_embeddings) {
    fail("input has ", T, " tokens but the model's context is ", model.config().max_position_embeddings,
         " (use --max-tokens to truncate)");
  }
  const int64_t chunk = std::max<int64_t>(1, options.chunk);
  FullKvCache cache = model.new_cache(T);
  const at::Tensor all = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  ScoreResult result;
  result.nll.reserve(T - 1);
  for (int64_t start = 0; start < T; start += chunk) {
    const int64_t n = std::min(chunk, T - start);
    const at::Tensor logits = model.forward(all.narrow(0, start, n), start, cache);
    // Row r predicts token start + r + 1; the very last row predicts nothing.
    const int64_t usable = std::min(n, T - 1 - start);
    if (usable > 0) {
      const at::Tensor rows = logits.narrow(0, 0, usable);
      std::vector<int64_t> targets(ids.begin() + start + 1, ids.begin() + start + 1 + usable);
      const auto nll = negative_log_likelihoods(rows, targets);
      result.nll.insert(result.nll.end(), nll.begin(), nll.end());
    }
    if (options.progress) options.progress(start + n, T);
  }
  return result;
}

}  // namespace kvscope
