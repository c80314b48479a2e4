#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include "analysis/spectrum.h"
#include "analysis/svd.h"
#include "commands.h"
#include "core/option_values.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "core/memory_bandwidth.h"
#include "core/progress.h"
#include "core/version.h"
#include "core/worker_pool.h"
#include "eval/sweep.h"
#include "model/row_linear.h"
#include "cache/policy_registry.h"
#include "model/device.h"
#include "model/kv_cache.h"
#include "model/random_model.h"

namespace kvscope::tools {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "1,4,16,64" -> batch sizes; refused before any model is built or loaded.
std::vector<int64_t> parse_sweep_batches(const std::string& text) {
  return distinct_values<int64_t>(text, "--sweep", [](const std::string& item) { return parse_whole(item, "--sweep", 1, int64_t{1} << 20); });
}

// Throughput of a ppl sweep at several batch sizes: every batch size runs the same mix of
// runs (the registered budgeted policies in turn, at least eight runs) over one document.
int bench_sweep(const LlamaModel& model, const std::vector<int64_t>& batches, int64_t tokens, int64_t budget, int repeat) {
  const ModelConfig& c = model.config();
  if (tokens > c.max_position_embeddings) fail("--sweep-tokens ", tokens, " exceeds the model's context of ", c.max_position_embeddings);
  std::vector<int64_t> ids(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) ids[i] = (i * 7919 + 13) % c.vocab_size;
  const std::vector<Window> windows = make_windows(Protocol::Stream, tokens, 0, 0);
  std::vector<std::string> policies;
  for (const auto& p : known_policies())
    if (!policy_info(p).traits.keeps_everything) policies.push_back(p);
  RunConfig base;
  base.positions = PositionMode::Original;
  base.budget.tokens = budget;
  double baseline = 0;
  for (int64_t batch : batches) {
    std::vector<SweepRun> runs;
    for (int64_t r = 0; r < std::max<int64_t>(batch, 8); ++r) {
      RunConfig rc = base;
      rc.policy = policies[static_cast<size_t>(r) % policies.size()];
      runs.push_back(SweepRun{&ids, &windows, rc});
    }
    double best = 1e30, best_cache_seconds = 0;
    int64_t scored = 0;
    // Every run scores tokens - 1 tokens; progress is throttled, so it costs nothing measurable.
    Progress progress(concat("sweep batch ", batch), static_cast<int64_t>(runs.size()) * (tokens - 1) * repeat);
    int64_t reported = 0;
    for (int rep = 0; rep < repeat; ++rep) {
      scored = 0;
      double cache_seconds = 0;
      const auto t0 = std::chrono::steady_clock::now();
      run_sweep(model, runs, batch,
                [&](int64_t n) {
                  scored += n;
                  progress.update(reported += n);
                },
                [&](size_t, RunOutput&& r) { cache_seconds += r.policy_seconds; });
      const double elapsed = seconds_since(t0);
      if (elapsed < best) {
        best = elapsed;
        best_cache_seconds = cache_seconds;
      }
    }
    progress.finish();
    const double rate = static_cast<double>(scored) / best;
    if (baseline == 0) baseline = rate;
    // The caches' own work, timed on the threads that do it: on CPU the runs of a batch attend
    // on the worker threads at once, on a GPU one host thread launches everything (and the
    // time to launch is what a launch-bound step waits for).
    const int threads = model.device().is_cpu() ? std::max(1, worker_threads()) : 1;
    std::printf("sweep      batch %3lld: %3zu runs x %lld tokens (budget %lld): %7.2f s, %8.1f scored tok/s (x%.2f vs batch %lld); "
                "cache bookkeeping %.0f%% of the threads' time\n",
                static_cast<long long>(batch), runs.size(), static_cast<long long>(tokens), static_cast<long long>(budget), best, rate,
                rate / baseline, static_cast<long long>(batches.front()), 100.0 * best_cache_seconds / (best * threads));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

Command register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode throughput (tokens/s) of a model or a random one");
  static std::string model_dir, random_spec;
  static RuntimeOptions rt;
  static int64_t prefill = 512, context = 2048, decode = 64;
  static int repeat = 3;
  static std::string svd, sweep, svd_method = "exact";
  static int64_t sweep_tokens = 512, sweep_budget = 128;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory (or use --random)");
  cmd->add_option("--random", random_spec,
                  std::string("benchmark a random-weight model: ") + kRandomSpecHelp)
      ->check(non_empty());
  cmd->add_option("--prefill", prefill, "tokens in the timed prefill")->capture_default_str()->check(at_least(1));
  cmd->add_option("--context", context, "cache length before the timed decode steps")->capture_default_str()->check(at_least(1));
  cmd->add_option("--decode", decode, "timed decode steps")->capture_default_str()->check(at_least(1));
  cmd->add_option("--svd", svd,
                  "instead: time singular values of COUNT matrices ROWS x COLS (ROWS,COLS,COUNT), the spectrum code path; "
                  "entry k = i*COLS + j of matrix b is frac(43758.5453 * sin(12.9898 * k + 78.233 * b)), a full-rank pseudo-random "
                  "matrix other tools can rebuild exactly")
      ->check(non_empty());
  cmd->add_option("--svd-method", svd_method,
                  "with --svd: exact, or gram (spectrum --method gram at its default tolerance; ill-conditioned matrices fall back)")
      ->capture_default_str()
      ->check(CLI::IsMember({"exact", "gram"}));
  cmd->add_option("--sweep", sweep,
                  "instead: perplexity-sweep throughput (scored tokens/s over all runs) for each batch size in a comma-separated "
                  "list, e.g. 1,4,16,64; batch B runs max(B, 8) runs cycling through the eight budgeted policies")
      ->check(non_empty());
  cmd->add_option("--sweep-tokens", sweep_tokens, "document length of each sweep run")->capture_default_str()->check(at_least(1));
  cmd->add_option("--sweep-budget", sweep_budget, "cache budget of each sweep run")->capture_default_str()->check(at_least(1));
  cmd->add_option("--repeat", repeat, "repetitions; the best is reported")->capture_default_str()->check(at_least(1, 1000));
  add_runtime_options(cmd, rt);
  return {cmd, [cmd] {
            // Each mode reads only its own options; one given to another mode is refused, not ignored.
            const auto refuse_unread = [cmd](const std::string& mode, const std::vector<std::string>& options) {
              for (const auto& option : options)
                if (cmd->count(option) > 0) fail(option, " is not read by ", mode, "; leave it out");
            };
            if (svd.empty()) refuse_unread("a model benchmark (without --svd)", {"--svd-method"});
            if (!svd.empty()) {
              refuse_unread("--svd", {"MODEL_DIR", "--random", "--prefill", "--context", "--decode", "--sweep", "--sweep-tokens",
                                      "--sweep-budget", "--repeat", "--device", "--dtype", "--threads", "--blas-threads"});
            } else if (!sweep.empty()) {
              refuse_unread("--sweep", {"--prefill", "--context", "--decode"});
            } else {
              refuse_unread("a decode benchmark (without --sweep)", {"--sweep-tokens", "--sweep-budget"});
            }
            if (!svd.empty()) {
              std::vector<int64_t> shape;
              std::stringstream items(svd);
              for (std::string item; std::getline(items, item, ',');) shape.push_back(parse_whole(item, "--svd", 1, int64_t{1} << 20));
              if (shape.size() != 3 || svd.back() == ',') fail("--svd '", svd, "': expected ROWS,COLS,COUNT, e.g. 4096,128,3072");
              const int64_t rows = shape[0], cols = shape[1], count = shape[2];
              if (rows * cols > (int64_t{1} << 28)) fail("--svd '", svd, "': ROWS x COLS above 2^28 entries (2 GiB per matrix)");
              // The matrices are built first, so that only the decompositions are timed.
              const double bytes = 8.0 * static_cast<double>(rows * cols) * static_cast<double>(count);
              const int64_t available = available_host_bytes();
              if (available > 0 && bytes > 0.8 * static_cast<double>(available))
                fail("--svd '", svd, "': the matrices take ", format_bytes(static_cast<int64_t>(bytes)), " and ", format_bytes(available),
                     " are free; lower COUNT");
              std::vector<std::vector<double>> matrices(static_cast<size_t>(count));
              parallel_for(count, [&](int64_t b) {
                std::vector<double>& a = matrices[static_cast<size_t>(b)];
                a.resize(static_cast<size_t>(rows * cols));
                for (int64_t k = 0; k < rows * cols; ++k) {
                  const double x = 43758.5453 * std::sin(12.9898 * static_cast<double>(k) + 78.233 * static_cast<double>(b));
                  a[k] = x - std::floor(x);
                }
              });
              std::vector<double> sigma1(static_cast<size_t>(count));
              std::atomic<int64_t> fallbacks{0};
              const bool gram = svd_method == "gram";
              const double tolerance = SpectrumOptions{}.gram_tolerance;
              const auto t0 = std::chrono::steady_clock::now();
              parallel_for(count, [&](int64_t b) {
                std::vector<double>& a = matrices[static_cast<size_t>(b)];
                std::optional<GramSingularValues> g;
                if (gram && !(g = gram_singular_values(a, rows, cols, MatrixLayout::RowMajor, tolerance))) ++fallbacks;
                sigma1[static_cast<size_t>(b)] = g ? g->sigma[0] : singular_values(a, rows, cols)[0];
              });
              const double secs = seconds_since(t0);
              double checksum = 0;  // summed in matrix order: the same digits on every run
              for (const double s1 : sigma1) checksum += s1;
              const std::string how = gram ? concat("Gram + dsyevd, tolerance ", tolerance, ", ", fallbacks.load(), " fell back to exact")
                                           : std::string("QR + gesdd");
              std::printf("svd        %lld matrices %lldx%lld (float64, %s, values only): %.4f s, %.4f ms/matrix; sum of sigma_1 %.17g; "
                          "matrix 0 sigma_1 %.17g\n", static_cast<long long>(count), static_cast<long long>(rows), static_cast<long long>(cols),
                          how.c_str(), secs, 1e3 * secs / static_cast<double>(count), checksum, sigma1[0]);
              return 0;
            }
            std::vector<int64_t> sweep_batches;
            if (!sweep.empty()) {
              sweep_batches = parse_sweep_batches(sweep);
              if (sweep_budget >= sweep_tokens) fail("--sweep-budget must be below --sweep-tokens");
            }
            if (!model_dir.empty() && !random_spec.empty()) fail("give MODEL_DIR or --random, not both");
            std::string dir = model_dir;
            // Removed on every way out, a failed write included.
            struct Cleanup {
              std::filesystem::path p;
              ~Cleanup() { if (!p.empty()) { std::error_code ec; std::filesystem::remove_all(p, ec); } }
            } cleanup;
            if (dir.empty()) {
              const RandomModelSpec spec = parse_random_model_spec(random_spec, "--random");
              const std::filesystem::path tmp = std::filesystem::temp_directory_path() / ("kvscope-bench-" + std::to_string(::getpid()));
              check_random_model_spec(spec, tmp.string());
              cleanup.p = tmp;
              write_random_model(tmp.string(), spec);
              dir = tmp.string();
            }
            const LlamaModel model = load_model(dir, rt);
            const ModelConfig& c = model.config();
            if (sweep.empty() && (prefill > c.max_position_embeddings || context + decode > c.max_position_embeddings)) {
              fail("--prefill/--context+--decode exceed the model's context of ", c.max_position_embeddings);
            }
            // Token ids live on the model's device, so a timed step copies nothing from the host.
            auto ids_of = [&](int64_t n) {
              std::vector<int64_t> v(n);
              for (int64_t i = 0; i < n; ++i) v[i] = (i * 7919 + 13) % c.vocab_size;
              return at::tensor(v, at::kLong).to(model.device());
            };
            // Line by line, so what was measured survives a later failure and shows up as it comes.
            std::setvbuf(stdout, nullptr, _IOLBF, 0);
            std::printf("model      %s (%.2f M params, %s, %s)\n", model_dir.empty() ? ("random " + random_spec).c_str() : model_dir.c_str(),
                        c.parameter_count() / 1e6, rt.dtype.c_str(), describe_device(model.device()).c_str());
            std::printf("machine    %u cores; kvscope %s (%s); row kernel %s; %s\n", std::thread::hardware_concurrency(), version(),
                        git_commit(), row_linear_isa(), library_versions().c_str());
            if (!sweep.empty()) return bench_sweep(model, sweep_batches, sweep_tokens, sweep_budget, repeat);
            double best_prefill = 1e30, best_decode = 1e30;
            // Every clock read follows a device synchronisation: CUDA work is queued
            // asynchronously, and timing the queue would time nothing.
            for (int r = 0; r < repeat; ++r) {
              FullKvCache cache = model.new_cache(prefill);
              const at::Tensor prompt = ids_of(prefill);
              synchronize(model.device());
              auto t0 = std::chrono::steady_clock::now();
              model.forward(prompt, 0, cache, nullptr, Logits::Last);
              synchronize(model.device());
              best_prefill = std::min(best_prefill, seconds_since(t0));

              FullKvCache dcache = model.new_cache(context + decode);
              model.forward(ids_of(context), 0, dcache, nullptr, Logits::None);
              const at::Tensor next = ids_of(decode);
              synchronize(model.device());
              t0 = std::chrono::steady_clock::now();
              for (int64_t i = 0; i < decode; ++i) model.forward(next.narrow(0, i, 1), context + i, dcache, nullptr, Logits::Last);
              synchronize(model.device());
              best_decode = std::min(best_decode, seconds_since(t0));
            }
            std::printf("prefill    %lld tokens: %.1f tok/s\n", static_cast<long long>(prefill), prefill / best_prefill);
            std::printf("decode     %lld steps at cache %lld: %.1f tok/s (%.3f ms/token)\n", static_cast<long long>(decode),
                        static_cast<long long>(context), decode / best_decode, 1e3 * best_decode / decode);
            if (model.device().is_cpu()) {
              // The floor for a decode step: every weight matrix read once per token.
              int64_t weight_bytes = model.weights().lm_head.nbytes();
              for (const LayerWeights& w : model.weights().layers)
                for (const at::Tensor* t : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down}) weight_bytes += t->nbytes();
              const double streamed = static_cast<double>(weight_bytes) * decode / best_decode, read = host_read_bandwidth();
              const int64_t cache_bytes = last_level_cache_bytes();
              std::printf("memory     reads %.1f GB/s (%d threads); decode streams its %.2f MB of weights at %.1f GB/s, %.0f%% of that%s\n",
                          read / 1e9, worker_threads(), weight_bytes / 1e6, streamed / 1e9, 100.0 * streamed / read,
                          cache_bytes > 0 && weight_bytes <= cache_bytes ? concat(" (they fit in the ", cache_bytes >> 20,
                                                                                 " MB last-level cache: memory is not the bound)").c_str() : "");
            }
            return 0;
          }};
}

}  // namespace kvscope::tools
