#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "commands.h"
#include "common.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/selection.h"
#include "eval/ppl.h"
#include "eval/ppl_results.h"
#include "eval/sweep.h"
#include "io/atomic_output.h"

namespace kvscope::tools {

Command register_ppl(CLI::App& app) {
  auto* cmd = app.add_subcommand("ppl", "Perplexity with a budgeted KV cache: every policy x budget (x weighting) in one sweep");
  static std::string model_dir, out, policies = "full,streaming,h2o,tova,knorm,random,cam,weightedkv,weightedkv-evict";
  static std::string budgets = "256", weightings = "avg-attention", receiver = "right", positions = "in-cache";
  static std::string max_memory;
  static std::string aggregation = "mean", protocol = "stream", skip_layers = "";
  static std::vector<std::string> texts, ids;
  static int64_t batch = 0, max_tokens = 0, sinks = 4, recent = -1, window = 0, stride = 0, cam_merge = 16, prefill_chunk = 256;
  static uint64_t seed = 0;
  static bool no_prefill = false, force = false, in_middle = false, log_perturbation = false, resume = false;
  static RuntimeOptions rt;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  add_document_options(cmd, texts, ids);
  cmd->add_option("-o,--out", out, "results .h5 (CSV and Markdown tables are written beside it)")->required();
  cmd->add_option("--max-tokens", max_tokens, "truncate each document to N tokens (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--policy", policies, "comma-separated: full, streaming, h2o, tova, knorm, random, cam, weightedkv, weightedkv-evict")->capture_default_str();
  cmd->add_option("--budget", budgets, "comma-separated cache budgets: token counts (256) or ratios of the evaluated length (0.25)")->capture_default_str();
  cmd->add_option("--weighting", weightings, "comma-separated merge weightings for weightedkv (" + known_merge_weightings() + ")")->capture_default_str();
  cmd->add_option("--receiver", receiver, "weightedkv receiver: right (paper), left, similar")->capture_default_str();
  cmd->add_flag("--neighbour-in-middle", in_middle, "weightedkv: the receiver must be a middle token (default: the first recent token may receive)");
  cmd->add_option("--sinks", sinks, "attention-sink tokens kept, inside the budget")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--recent", recent, "recent tokens kept, inside the budget (default: budget - sinks for streaming/cam, budget/2 - sinks otherwise)");
  cmd->add_option("--positions", positions, "original (keys at true positions) or in-cache (re-rotated by cache index, as StreamingLLM)")
      ->capture_default_str()->check(CLI::IsMember({"original", "in-cache"}));
  cmd->add_option("--aggregation", aggregation, "query heads -> KV head attention for GQA: mean, sum, max")->capture_default_str()
      ->check(CLI::IsMember({"mean", "sum", "max"}));
  cmd->add_option("--skip-layers", skip_layers, "knorm: layers left uncompressed, e.g. 0,1");
  cmd->add_option("--cam-merge", cam_merge, "cam: values that receive each evicted value")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--protocol", protocol, "stream (whole document), sliding (--window/--stride), chunks (--window, cache reset)")
      ->capture_default_str()->check(CLI::IsMember({"stream", "sliding", "chunks"}));
  cmd->add_option("--window", window, "window length for sliding/chunks")->check(CLI::NonNegativeNumber);
  cmd->add_option("--stride", stride, "sliding stride (default window/2)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", seed, "seed for random and cam")->capture_default_str();
  cmd->add_flag("--no-prefill", no_prefill, "decode every token (default: prefill up to the budget, which is exact)");
  cmd->add_option("--prefill-chunk", prefill_chunk, "tokens per prefill call")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--log-perturbation", log_perturbation,
                "record, for every eviction or merge, the exact change of each affected head's attention output at that step");
  cmd->add_option("--batch", batch,
                  "runs decoded together in one forward step (default: all runs up to 32, within --max-memory); "
                  "per-token results are identical for every batch size on CPU in float32")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-memory", max_memory, "memory the sweep may use, e.g. 8G (default: 90% of the free memory)");
  cmd->add_flag("--resume", resume, "continue an interrupted sweep from OUT.resume.h5, skipping the runs it finished");
  cmd->add_flag("--force", force, "overwrite existing outputs");
  add_runtime_options(cmd, rt);
  return {cmd, [] {
            const Protocol proto = parse_protocol(protocol);
            if (proto != Protocol::Stream && window <= 0) fail("--protocol ", protocol, " needs --window");
            AtomicOutput output(out, force);
            const std::string csv_path = sidecar_path(out, ".csv", force), md_path = sidecar_path(out, ".md", force);
            const LlamaModel model = load_model(model_dir, rt);
            const ModelConfig& c = model.config();

            std::vector<std::string> sources;
            const auto docs = read_documents(model_dir, c, texts, ids, max_tokens, &sources);
            const int64_t stride_used = stride > 0 ? stride : std::max<int64_t>(1, window / 2);
            std::vector<std::vector<Window>> windows;
            for (const auto& d : docs) windows.push_back(make_windows(proto, static_cast<int64_t>(d.size()), window, stride_used));

            RunConfig base;
            base.cache = PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, model.dtype(), model.device(),
                                           positions == "original" ? PositionMode::Original : PositionMode::InCache,
                                           aggregation == "mean" ? AttentionAggregation::Mean
                                           : aggregation == "sum" ? AttentionAggregation::Sum : AttentionAggregation::Max};
            base.options.sinks = sinks;
            base.options.recent = recent;
            base.options.seed = seed;
            base.options.cam_merge_count = cam_merge;
            base.options.receiver = parse_merge_receiver(receiver);
            base.options.neighbour_in_middle = in_middle;
            base.prefill = !no_prefill;
            base.prefill_chunk = prefill_chunk;
            base.log_perturbation = log_perturbation;
            if (!skip_layers.empty()) base.options.skip_layers = parse_selection(skip_layers, static_cast<int>(c.num_layers), "layer");

            // Every configuration is validated before any decoding starts.
            std::vector<RunConfig> configs;
            for (const auto& p : split_list(policies)) {
              const bool is_wkv = p == "weightedkv";
              const std::vector<std::string> budget_list = p == "full" ? std::vector<std::string>{"full"} : split_list(budgets);
              for (const auto& b : budget_list) {
                for (const auto& w : is_wkv ? split_list(weightings) : std::vector<std::string>{""}) {
                  RunConfig rc = base;
                  rc.policy = p;
                  if (p != "full") rc.budget = parse_budget(b);
                  if (is_wkv) {
                    rc.options.weighting = w;
                    make_merge_weighting(w);
                  }
                  for (const auto& ws : windows) {
                    for (const Window& win : ws) {
                      const int64_t len = win.end - win.begin;
                      const int64_t budget = p == "full" ? len : rc.budget.resolve(len);
                      if (proto != Protocol::Stream && budget > window) fail("--budget ", b, " is larger than --window ", window);
                      PolicyOptions po = rc.options;
                      po.budget = budget;
                      make_policy(p, po);
                    }
                  }
                  configs.push_back(rc);
                }
              }
            }
            if (configs.empty()) fail("--policy: no policies given");
            int64_t total = 0;
            for (const auto& ws : windows)
              for (const Window& w : ws) total += w.end - w.score_from;
            total *= static_cast<int64_t>(configs.size());

            std::fprintf(stderr, "ppl: %zu configurations x %zu documents, %lld tokens to score, protocol %s, positions %s\n",
                         configs.size(), docs.size(), static_cast<long long>(total), protocol.c_str(), positions.c_str());
            PplProvenance prov{model_dir, command_line(), protocol, positions, aggregation, window, stride_used, sinks, recent, seed, sources};
            const std::string resume_path = out + ".resume.h5";
            std::vector<PplRun> finished;
            std::error_code ec;
            if (resume && std::filesystem::exists(resume_path, ec)) {
              check_resumable(resume_path, prov);
              finished = read_ppl_results(resume_path);
              std::fprintf(stderr, "ppl: resuming: %zu of %zu runs already done\n", finished.size(), configs.size() * docs.size());
            } else if (resume) {
              std::fprintf(stderr, "ppl: --resume: no %s, starting from the beginning\n", resume_path.c_str());
            } else if (std::filesystem::exists(resume_path, ec) && !force) {
              fail(resume_path, ": an interrupted sweep left this; pass --resume to continue it or --force to start over");
            }
            struct Job {
              const RunConfig* config;
              size_t document;
            };
            std::vector<Job> jobs;
            for (const RunConfig& rc : configs)
              for (size_t d = 0; d < docs.size(); ++d) jobs.push_back(Job{&rc, d});
            std::vector<std::optional<PplRun>> results(jobs.size());
            Progress progress("ppl", total);
            int64_t done = 0;
            std::vector<SweepRun> pending;
            std::vector<size_t> pending_job;
            for (size_t j = 0; j < jobs.size(); ++j) {
              const RunConfig& rc = *jobs[j].config;
              const size_t d = jobs[j].document;
              const std::string budget_label = rc.policy == "full" ? "full" : rc.budget.label();
              const std::string weighting = rc.policy == "weightedkv" ? rc.options.weighting : "";
              const auto previous = std::find_if(finished.begin(), finished.end(), [&](const PplRun& r) {
                return r.policy == rc.policy && r.budget_label == budget_label && r.weighting == weighting &&
                       r.document == static_cast<int64_t>(d) && r.source == sources[d];
              });
              if (previous != finished.end()) {
                done += static_cast<int64_t>(previous->nll.size());
                results[j] = *previous;
                continue;
              }
              pending.push_back(SweepRun{&docs[d], &windows[d], rc});
              pending_job.push_back(j);
            }

            SweepMemory memory = estimate_sweep_memory(model, pending);
            if (!max_memory.empty()) memory.available_bytes = parse_byte_size(max_memory, "--max-memory");
            else if (memory.available_bytes >= 0) memory.available_bytes = static_cast<int64_t>(0.9 * static_cast<double>(memory.available_bytes));
            const int64_t batch_used = batch > 0 ? batch : default_sweep_batch(memory, pending.size());
            const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(batch_used, static_cast<int64_t>(pending.size())));
            std::fprintf(stderr, "ppl: batch %lld: weights %s + %lld x %s per run = %s%s\n", static_cast<long long>(batch_used),
                         format_bytes(memory.weights_bytes).c_str(), static_cast<long long>(lanes), format_bytes(memory.per_run_bytes).c_str(),
                         format_bytes(memory.total(lanes)).c_str(),
                         memory.available_bytes >= 0 ? concat(" of ", format_bytes(memory.available_bytes), " allowed").c_str()
                                                     : " (free device memory is not checked; --max-memory sets a limit)");
            if (memory.available_bytes >= 0 && memory.total(lanes) > memory.available_bytes) {
              const int64_t fits = memory.largest_batch();
              if (memory.total(1) > memory.available_bytes)
                fail("even one run needs about ", format_bytes(memory.total(1)), " but only ", format_bytes(memory.available_bytes),
                     " is allowed (lower --budget or --window, or raise --max-memory)");
              fail("--batch ", batch_used, " needs about ", format_bytes(memory.total(lanes)), " but only ",
                   format_bytes(memory.available_bytes), " is allowed; --batch ", fits, " fits");
            }

            prov.batch = batch_used;
            auto to_ppl_run = [&](size_t j, RunOutput&& r) {
              const RunConfig& rc = *jobs[j].config;
              PplRun run;
              run.policy = rc.policy;
              run.budget_label = rc.policy == "full" ? "full" : rc.budget.label();
              run.weighting = rc.policy == "weightedkv" ? rc.options.weighting : "";
              run.receiver = rc.policy == "weightedkv" ? merge_receiver_name(rc.options.receiver) : "";
              run.budget = r.resolved_budget;
              run.document = static_cast<int64_t>(jobs[j].document);
              run.source = sources[jobs[j].document];
              run.max_cache = r.max_cache;
              run.seconds = r.seconds;
              run.policy_seconds = r.policy_seconds;
              run.nll = std::move(r.nll);
              run.token_index = std::move(r.token_index);
              for (const PerturbationEvent& e : r.perturbation) {
                run.perturbation_step.push_back(e.step);
                run.perturbation_layer.push_back(e.layer);
                run.perturbation_head.push_back(e.head);
                run.perturbation_relative_change.push_back(e.relative_change);
                run.perturbation_cosine.push_back(e.cosine);
              }
              return run;
            };
            auto finished_runs = [&] {
              std::vector<PplRun> out;
              for (const auto& r : results)
                if (r) out.push_back(*r);
              return out;
            };
            const std::string label = concat(pending.size(), " runs, ", lanes, " at a time");
            run_sweep(model, pending, batch_used,
                      [&](int64_t n) {
                        done += n;
                        progress.update(done, label);
                      },
                      [&](size_t i, RunOutput&& r) {
                        results[pending_job[i]] = to_ppl_run(pending_job[i], std::move(r));
                        // Finished runs are saved as each one ends, so an interrupted sweep can resume.
                        AtomicOutput checkpoint(resume_path, true);
                        write_ppl_results(checkpoint.temp_path().string(), finished_runs(), prov, c.raw_json);
                        checkpoint.commit();
                      });
            const std::vector<PplRun> runs = finished_runs();
            progress.finish();
            const auto rows = summarise(runs);
            const std::string caption = concat("Perplexity of ", model_dir, " on ", docs.size(), " document(s), protocol ", protocol,
                                               proto == Protocol::Stream ? "" : concat(" (window ", window, ", stride ", stride_used, ")"),
                                               ", positions ", positions, ", sinks ", sinks, ".");
            const std::string md = markdown_table(rows, caption);
            std::printf("%s", md.c_str());
            write_ppl_results(output.temp_path().string(), runs, prov, c.raw_json);
            output.commit();
            std::filesystem::remove(resume_path, ec);
            write_text_file(csv_path, csv_table(rows));
            write_text_file(md_path, md);
            std::fprintf(stderr, "wrote %s, %s, %s\n", out.c_str(), csv_path.c_str(), md_path.c_str());
            return 0;
          }};
}

}  // namespace kvscope::tools
