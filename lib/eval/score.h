#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace at { class Tensor; }

namespace kvscope {

class LlamaModel;

struct ScoreOptions {
  // Tokens per forward call: 1 = token-by-token decode; >= T = one prefill.
  int64_t chunk = 512;
  // Called after each forward call with (tokens done, total).
  std::function<void(int64_t, int64_t)> progress;
};

struct ScoreResult {
  std::vector<double> nll;  // nll[i] = -log p(ids[i+1] | ids[0..i]), size T-1
  double mean_nll() const;
  double perplexity() const;
};

// Teacher-forced scoring with the full cache.
ScoreResult score_tokens(const LlamaModel& model, const std::vector<int64_t>& ids, const ScoreOptions& options);

// -log softmax(logits)[target] for each row, computed in float64. logits: [T, V].
std::vector<double> negative_log_likelihoods(const at::Tensor& logits, const std::vector<int64_t>& targets);
// The same on the logits' device: targets [T] int64 there, result [T] float64 there.
at::Tensor negative_log_likelihoods(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace kvscope
