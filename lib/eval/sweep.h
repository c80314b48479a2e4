#pragma once
// A perplexity sweep decoded in lockstep: up to `batch` runs (policy x budget x weighting x
// document) advance together, one forward_step per token for all of them, so the weights
// are read once per step instead of once per run. A run that finishes is replaced by the
// next one waiting; documents of different lengths simply finish at different steps.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "eval/ppl.h"

namespace kvscope {

class LlamaModel;

struct SweepRun {
  const std::vector<int64_t>* ids;
  const std::vector<Window>* windows;
  RunConfig config;
};

// Runs `runs` (indices into it are reported back), `batch` at a time. on_token(n) after n
// more tokens are scored; on_done(i, output) when run i finishes, in completion order.
// Each run's NLL equals, bit for bit, what run_document gives it alone (CPU, float32).
void run_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, int64_t batch,
               const std::function<void(int64_t)>& on_token,
               const std::function<void(size_t, RunOutput&&)>& on_done);

// The same over the runs `next_run` hands out, one index at a time as a batch slot frees,
// until it returns nothing (it is not asked again). Lets a sweep be fed while it runs.
void run_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, int64_t batch,
               const std::function<std::optional<size_t>()>& next_run, const std::function<void(int64_t)>& on_token,
               const std::function<void(size_t, RunOutput&&)>& on_done);

// What a batch of runs needs in memory, for the up-front check.
struct SweepMemory {
  int64_t weights_bytes = 0;
  int64_t per_run_bytes = 0;   // the largest run's cache plus its share of the step's activations
  int64_t available_bytes = -1;  // what the sweep may use; -1: unknown (not CPU)
  int64_t total(int64_t batch) const { return weights_bytes + batch * per_run_bytes; }
  // The largest batch whose total is within `fraction` of available_bytes (at least 1).
  int64_t largest_batch(double fraction = 1.0) const;
};
SweepMemory estimate_sweep_memory(const LlamaModel& model, const std::vector<SweepRun>& runs);

// The batch used when --batch is not given: every run if they are few, otherwise enough
// rows to turn the weight-bound step compute-bound, capped by memory.
int64_t default_sweep_batch(const SweepMemory& memory, size_t runs);

std::string format_bytes(int64_t bytes);

}  // namespace kvscope
