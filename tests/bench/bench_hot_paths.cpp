// Google Benchmark for the hot paths: one decode step of the forward pass, one budgeted
// cache step per policy (the cache's own work, with synthetic attention), and SVD.
// Run: build/tests/kvscope_bench_hot_paths
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "analysis/svd.h"
#include "cache/policy_cache.h"
#include "core/threads.h"
#include "eval/ppl_results.h"
#include "eval/resume_journal.h"
#include "eval/run_output_wire.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "model/row_linear.h"

namespace kvscope {
namespace {

const LlamaModel& model_30m() {
  static const LlamaModel* model = [] {
    configure_threads(0, 0);
    RandomModelSpec spec;  // 55 M: 8 layers, hidden 512, 8/2 heads, vocab 32000
    spec.vocab_size = 32000;
    spec.hidden_size = 512;
    spec.intermediate_size = 1376;
    spec.num_layers = 8;
    spec.num_heads = 8;
    spec.num_kv_heads = 2;
    spec.max_position_embeddings = 4096;
    const auto dir = std::filesystem::temp_directory_path() / "kvscope-bench-30m";
    if (!std::filesystem::exists(dir / "model.safetensors")) write_random_model(dir.string(), spec);
    return new LlamaModel(LlamaModel::load(dir));
  }();
  return *model;
}

void BM_DecodeStep(benchmark::State& state) {
  const LlamaModel& m = model_30m();
  const int64_t context = state.range(0);
  FullKvCache cache = m.new_cache(context + 1024);
  m.forward(at::arange(context, at::kLong) % 32000, 0, cache, nullptr, Logits::None);
  int64_t pos = context;
  for (auto _ : state) {
    if (pos >= context + 1000) {  // keep the cache length near `context`
      state.PauseTiming();
      cache = m.new_cache(context + 1024);
      m.forward(at::arange(context, at::kLong) % 32000, 0, cache, nullptr, Logits::None);
      pos = context;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(m.forward(at::full({1}, pos % 32000, at::kLong), pos, cache, nullptr, Logits::Last));
    ++pos;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeStep)->Arg(256)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// One decode step for B runs at once (forward_step), each with its own budgeted cache of
// 128 tokens, against the same B runs stepped one at a time: the batched sweep's hot path.
void BM_DecodeBatch(benchmark::State& state, bool together) {
  const LlamaModel& m = model_30m();
  const ModelConfig& c = m.config();
  const int64_t B = state.range(0), context = 128;
  std::vector<std::unique_ptr<PolicyCache>> caches;
  for (int64_t b = 0; b < B; ++b) {
    PolicyOptions po;
    po.budget = context;
    caches.push_back(std::make_unique<PolicyCache>(
        PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, m.dtype(), m.device(), PositionMode::Original,
                          AttentionAggregation::Mean},
        std::shared_ptr<CachePolicy>(make_policy("weightedkv", po)), m.rope(), context));
    std::vector<int64_t> prefix(context);
    for (int64_t i = 0; i < context; ++i) prefix[i] = (i * 31 + b) % c.vocab_size;
    m.forward(at::tensor(prefix, at::kLong), 0, *caches.back(), nullptr, Logits::None);
  }
  int64_t pos = context;
  for (auto _ : state) {
    std::vector<LlamaModel::DecodeSlot> slots;
    for (int64_t b = 0; b < B; ++b) slots.push_back({(pos * 7 + b) % c.vocab_size, pos, caches[b].get(), nullptr});
    if (together) {
      benchmark::DoNotOptimize(m.forward_step(slots));
    } else {
      for (const auto& s : slots) benchmark::DoNotOptimize(m.forward_step({s}));
    }
    ++pos;
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(B * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_DecodeBatch, together, true)->Arg(1)->Arg(4)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_DecodeBatch, one_at_a_time, false)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();

// The cache alone: append one token and observe one attention row per layer, with the
// 55 M model's shapes (8 layers, 8 heads, 2 KV heads, head_dim 64) at a full budget. The
// second argument picks the bookkeeping: 0 host (a CPU cache's), 1 device (a GPU cache's,
// here run on CPU tensors to price its operator dispatch).
void BM_CacheStep(benchmark::State& state, const std::string& policy) {
  const int64_t budget = state.range(0), L = 8, H = 8, KV = 2, hd = 64;
  const CacheBookkeeping bookkeeping = state.range(1) ? CacheBookkeeping::Device : CacheBookkeeping::Host;
  state.SetLabel(state.range(1) ? "device path" : "host path");
  ModelConfig rc;
  rc.head_dim = hd;
  rc.max_position_embeddings = 1 << 16;
  const Rope rope(rc, at::kCPU);
  PolicyOptions po;
  po.budget = budget;
  PolicyCache cache(PolicyCacheConfig{L, H, KV, hd, at::kFloat, at::kCPU, PositionMode::Original, AttentionAggregation::Mean, bookkeeping},
                    std::shared_ptr<CachePolicy>(make_policy(policy, po)), rope, policy == "full" ? 1 << 20 : budget);
  const at::Tensor k = at::randn({KV, 1, hd}), v = at::randn({KV, 1, hd});
  // Attention rows drawn once, outside the timed steps (drawing 8 x 1,024 random numbers
  // per layer took most of the time this benchmark used to report as the cache's).
  const int64_t widest = policy == "full" ? 1 << 16 : budget + 1;
  at::Tensor rows = at::rand({H, 1, widest});
  rows = rows / rows.sum(-1, true);
  int64_t pos = 0;
  auto step = [&] {
    const at::Tensor p = at::full({1}, pos++, at::kLong);
    for (int layer = 0; layer < L; ++layer) {
      const AttentionInputs in = cache.append(layer, NewEntries{k, k, v, p});
      cache.observe_attention(layer, rows.narrow(2, 0, in.keys.size(1)));
    }
  };
  for (int64_t i = 0; i < budget; ++i) step();
  for (auto _ : state) step();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_CacheStep, full, std::string("full"))->Args({1024, 0})->Unit(benchmark::kMicrosecond)->Iterations(500);
BENCHMARK_CAPTURE(BM_CacheStep, streaming, std::string("streaming"))->Args({1024, 0})->Args({1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CacheStep, h2o, std::string("h2o"))->Args({1024, 0})->Args({1024, 1})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CacheStep, weightedkv, std::string("weightedkv"))->Args({1024, 0})->Args({1024, 1})->Unit(benchmark::kMicrosecond);

// One linear layer for B rows: kvscope's batch-invariant kernel against BLAS (B mv calls, as
// B runs decoded one at a time would make; one mm, as a batch would without invariance).
// Shapes of the 55 M model's MLP up and down projections (1376 x 512, 512 x 1376) and its LM
// head (32000 x 512).
enum class Linear { RowKernel, MvEach, Mm };
void BM_Linear(benchmark::State& state, Linear how) {
  configure_threads(0, 0);
  const int64_t B = state.range(0), N = state.range(1), K = state.range(2);
  at::manual_seed(0);
  const at::Tensor w = at::randn({N, K}), x = at::randn({B, K});
  for (auto _ : state) {
    if (how == Linear::RowKernel) benchmark::DoNotOptimize(row_linear(x, w));
    if (how == Linear::Mm) benchmark::DoNotOptimize(at::mm(x, w.t()));
    if (how == Linear::MvEach) for (int64_t b = 0; b < B; ++b) benchmark::DoNotOptimize(at::mv(w, x[b]));
  }
  state.counters["rows/s"] = benchmark::Counter(static_cast<double>(B * state.iterations()), benchmark::Counter::kIsRate);
}
void linear_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {1, 4, 8, 16, 64}) {
    b->Args({rows, 1376, 512});
    b->Args({rows, 512, 1376});
    b->Args({rows, 32000, 512});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_Linear, row_kernel, Linear::RowKernel)->Apply(linear_shapes);
BENCHMARK_CAPTURE(BM_Linear, mv_each, Linear::MvEach)->Apply(linear_shapes);
BENCHMARK_CAPTURE(BM_Linear, mm, Linear::Mm)->Apply(linear_shapes);

void BM_SingularValues(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  std::mt19937_64 rng(3);
  std::normal_distribution<double> g;
  std::vector<double> a(rows * cols);
  for (double& x : a) x = g(rng);
  for (auto _ : state) {
    std::vector<double> copy = a;
    benchmark::DoNotOptimize(singular_values(copy, rows, cols));
  }
}
BENCHMARK(BM_SingularValues)->Args({1024, 128})->Args({4096, 128})->Unit(benchmark::kMillisecond);

// What rank 0 of an MPI sweep does for each run another rank finishes: decode its message
// (4,096 scored tokens), and record the run in the resume journal.
// A run key as the sweep plan makes them: 16 hex digits.
std::string run_key(int64_t i) {
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(i));
  return key;
}

RunOutput synthetic_run(int64_t tokens) {
  RunOutput o;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 10.0);
  for (int64_t t = 0; t < tokens; ++t) {
    o.nll.push_back(u(rng));
    o.token_index.push_back(t + 1);
  }
  return o;
}

void BM_GatherDecode(benchmark::State& state) {
  const std::string bytes = encode_run_output(7, synthetic_run(4096));
  size_t run = 0;
  for (auto _ : state) benchmark::DoNotOptimize(decode_run_output(bytes, &run));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_GatherDecode)->Unit(benchmark::kMicrosecond);

// Recording one more finished run (4,096 tokens) in a resume journal that already holds
// Arg runs: one file of its own, so the cost does not grow with the sweep.
void BM_ResumeRecord(benchmark::State& state) {
  const RunOutput o = synthetic_run(4096);
  auto run_numbered = [&](int64_t i) {
    PplRun r;
    r.policy = "h2o";
    r.key = run_key(i);
    r.budget_label = "128";
    r.nll = o.nll;
    r.token_index = o.token_index;
    return r;
  };
  const PplProvenance prov{"model", "kvscope ppl", SweepSettings{}, {"doc"}};
  const std::string out = (std::filesystem::temp_directory_path() / ("kvscope-bench-resume-" + std::to_string(::getpid()) + ".h5")).string();
  const ResumeJournal journal(out);
  for (int64_t i = 0; i < state.range(0); ++i) journal.record(run_numbered(i), prov, "{}");
  int64_t next = state.range(0);
  for (auto _ : state) journal.record(run_numbered(next++), prov, "{}");
  journal.clear();
}
BENCHMARK(BM_ResumeRecord)->Arg(1)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvscope

BENCHMARK_MAIN();
