#include "eval/sweep.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "cache/policy_registry.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "eval/document_run.h"
#include "model/llama.h"

namespace kvscope {

void run_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, int64_t batch,
               const std::function<std::optional<size_t>()>& next_run, const std::function<void(int64_t)>& on_token,
               const std::function<void(size_t, RunOutput&&)>& on_done) {
  if (batch < 1) fail("--batch must be at least 1");
  struct Active {
    size_t index;
    std::unique_ptr<DocumentRun> run;
  };
  std::vector<Active> active;
  bool exhausted = false;
  std::vector<LlamaModel::DecodeSlot> slots;
  for (;;) {
    // Refill the batch; a run whose remaining work is all prefill finishes right here.
    for (size_t i = 0; i < active.size() || (static_cast<int64_t>(active.size()) < batch && !exhausted);) {
      if (i == active.size()) {
        const std::optional<size_t> next = next_run();
        if (!next) {
          exhausted = true;
          continue;
        }
        if (*next >= runs.size()) fail("internal: run ", *next, " of a sweep of ", runs.size());
        const SweepRun& r = runs[*next];
        active.push_back(Active{*next, std::make_unique<DocumentRun>(model, *r.ids, *r.windows, r.config, on_token)});
      }
      active[i].run->advance();
      if (active[i].run->finished()) {
        on_done(active[i].index, active[i].run->take_output());
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      ++i;
    }
    if (active.empty()) return;
    slots.clear();
    for (const Active& a : active) slots.push_back(a.run->next_step());
    const at::Tensor logits = model.forward_step(slots);
    for (size_t b = 0; b < active.size(); ++b) active[b].run->accept(logits.narrow(0, static_cast<int64_t>(b), 1));
  }
}

void run_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, int64_t batch,
               const std::function<void(int64_t)>& on_token, const std::function<void(size_t, RunOutput&&)>& on_done) {
  size_t next = 0;
  run_sweep(
      model, runs, batch, [&]() -> std::optional<size_t> { return next < runs.size() ? std::optional<size_t>(next++) : std::nullopt; },
      on_token, on_done);
}

namespace {

int64_t tensor_bytes(const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

}  // namespace

SweepMemory estimate_sweep_memory(const LlamaModel& model, const std::vector<SweepRun>& runs) {
  SweepMemory m;
  const ModelWeights& w = model.weights();
  m.weights_bytes = tensor_bytes(w.embed) + tensor_bytes(w.final_norm);
  if (!w.lm_head.is_same(w.embed)) m.weights_bytes += tensor_bytes(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const at::Tensor* t : {&l.attn_norm, &l.ffn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.w_gate, &l.w_up, &l.w_down})
      m.weights_bytes += tensor_bytes(*t);
  }
  const ModelConfig& c = model.config();
  const int64_t element = static_cast<int64_t>(at::elementSize(model.dtype()));
  // Per cached token and layer: K and V, the int64 position, and the policy's per-head
  // bookkeeping (position, attention sums, counts, norm, order: about 48 bytes).
  const int64_t per_token_layer = c.num_kv_heads * (2 * c.head_dim * element + 8 + 48);
  int64_t largest = 0;
  for (const SweepRun& r : runs) {
    int64_t capacity = 0;
    for (const Window& win : *r.windows) {
      const int64_t len = win.end - win.begin;
      capacity = std::max(capacity, policy_info(r.config.policy).traits.keeps_everything ? len : std::min(len, r.config.budget.resolve(len)) + 1);
    }
    // The step's transient tensors: fp32 scores and probabilities over the cache for one
    // layer, the residual stream, and the fp32 logits row with its log-softmax.
    const int64_t transient = 4 * (3 * c.num_heads * capacity + 8 * c.hidden_size + 3 * c.vocab_size);
    largest = std::max(largest, c.num_layers * capacity * per_token_layer + transient +
                                    static_cast<int64_t>(r.ids->size()) * 8 * 3);
  }
  m.per_run_bytes = largest;
  if (model.device().is_cpu()) m.available_bytes = available_host_bytes();
  return m;
}

int64_t SweepMemory::largest_batch(double fraction) const {
  if (available_bytes < 0) return 1 << 20;
  const double room = fraction * static_cast<double>(available_bytes) - static_cast<double>(weights_bytes);
  return std::max<int64_t>(1, static_cast<int64_t>(room / static_cast<double>(std::max<int64_t>(per_run_bytes, 1))));
}

int64_t default_sweep_batch(const SweepMemory& memory, size_t runs) {
  // Measured on 2 cores (README, "Batched sweeps"): throughput rises steeply up to 16 runs
  // per step and gains little after that (4.2x at 64 against 3.4x at 16 on a 30 M model),
  // while memory grows linearly.
  constexpr int64_t kDefaultBatch = 32;
  return std::max<int64_t>(1, std::min<int64_t>({kDefaultBatch, static_cast<int64_t>(runs), memory.largest_batch()}));
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof(buf), "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1024.0 * 1024));
  else std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  return buf;
}

}  // namespace kvscope
