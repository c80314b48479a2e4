#pragma once
// One perplexity run (a configuration over one document) as a sequence of steps, so a sweep
// can advance many runs together: the scheduler asks each run for its next decode token,
// steps all of them in one forward call, and hands each its row of logits back.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <ATen/ATen.h>

#include "eval/perturbation_log.h"
#include "eval/ppl.h"
#include "model/llama.h"

namespace kvscope {

// The budgeted cache a run of `config` needs on `model` (its shape, dtype, device, positions
// and aggregation).
PolicyCacheConfig policy_cache_config(const LlamaModel& model, const RunConfig& config);

class DocumentRun {
 public:
  DocumentRun(const LlamaModel& model, const std::vector<int64_t>& ids, const std::vector<Window>& windows,
              const RunConfig& config, std::function<void(int64_t)> on_token = {}, DecisionObserver* decisions = nullptr);

  // Runs prefill chunks (each alone: a chunk is a matrix product whose rounding depends on
  // its row count, so chunks are never batched) and closes finished windows, until the next
  // step is a single decode token or the run is over.
  void advance();
  bool finished() const { return window_ >= windows_.size(); }

  // The decode step the run needs next (valid after advance() when not finished).
  LlamaModel::DecodeSlot next_step();
  // The logits [1, V] the model produced for next_step().
  void accept(const at::Tensor& logits);

  RunOutput take_output();

 private:
  void open_window();
  void close_window();
  void keep(const at::Tensor& logits, int64_t first_row_pos);
  // Moves the NLLs computed on the model's device since the last call into out_.
  void collect_nll();

  const LlamaModel& model_;
  const std::vector<int64_t>& ids_;
  const std::vector<Window>& windows_;
  RunConfig config_;
  std::function<void(int64_t)> on_token_;
  DecisionObserver* decisions_;
  at::Tensor all_;
  std::chrono::steady_clock::time_point started_;

  size_t window_ = 0;
  bool window_open_ = false;
  int64_t pos_ = 0, budget_ = 0, len_ = 0;
  std::unique_ptr<PolicyCache> cache_;
  PerturbationLog log_;
  DecisionObservers observers_;
  RunOutput out_;
  std::vector<at::Tensor> pending_nll_;  // per kept call, on the model's device; read once per window
};

}  // namespace kvscope
