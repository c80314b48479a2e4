#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>

#include "cache/policy_registry.h"
#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/progress.h"
#include "dist/cluster.h"
#include "eval/distributed_sweep.h"
#include "eval/ppl.h"
#include "eval/ppl_results.h"
#include "eval/resume_journal.h"
#include "eval/sweep.h"
#include "eval/sweep_plan.h"
#include "io/atomic_output.h"
#include "settings_cli.h"

namespace kvscope::tools {
namespace {

PplRun to_ppl_run(const PlannedRun& planned, const std::string& source, RunOutput&& r) {
  PplRun run;
  run.policy = planned.config.policy;
  run.key = planned.key;
  run.budget_label = planned.budget_label;
  run.weighting = planned.weighting;
  run.receiver = planned.receiver;
  run.budget = r.resolved_budget;
  run.document = static_cast<int64_t>(planned.document);
  run.source = source;
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
}

// The batch to use, after checking that it fits in memory; prints the estimate.
// Under MPI the memory is that of one rank: --max-memory, or the free memory, shared by
// the ranks on this node.
int64_t choose_batch(const LlamaModel& model, const std::vector<SweepRun>& pending, int64_t batch, const std::string& max_memory) {
  const cluster::Info& me = cluster::info();
  SweepMemory memory = estimate_sweep_memory(model, pending);
  if (!max_memory.empty()) memory.available_bytes = parse_byte_size(max_memory, "--max-memory");
  else if (memory.available_bytes >= 0)
    memory.available_bytes = static_cast<int64_t>(0.9 * static_cast<double>(memory.available_bytes) / me.local_size);
  const int64_t batch_used = batch > 0 ? batch : default_sweep_batch(memory, pending.size());
  const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(batch_used, static_cast<int64_t>(pending.size())));
  if (me.rank == 0) {
    std::fprintf(stderr, "ppl: batch %lld%s: weights %s + %lld x %s per run = %s%s\n", static_cast<long long>(batch_used),
                 me.size > 1 ? concat(" per rank, ", me.size, " ranks").c_str() : "",
                 format_bytes(memory.weights_bytes).c_str(), static_cast<long long>(lanes), format_bytes(memory.per_run_bytes).c_str(),
                 format_bytes(memory.total(lanes)).c_str(),
                 memory.available_bytes >= 0 ? concat(" of ", format_bytes(memory.available_bytes), " allowed").c_str()
                                             : " (free device memory is not checked; --max-memory sets a limit)");
  }
  if (memory.available_bytes >= 0 && memory.total(lanes) > memory.available_bytes) {
    if (memory.total(1) > memory.available_bytes)
      fail("even one run needs about ", format_bytes(memory.total(1)), " but only ", format_bytes(memory.available_bytes),
           " is allowed (lower --budget or --window, or raise --max-memory)");
    fail("--batch ", batch_used, " needs about ", format_bytes(memory.total(lanes)), " but only ", format_bytes(memory.available_bytes),
         " is allowed; --batch ", memory.largest_batch(), " fits");
  }
  return batch_used;
}

}  // namespace

Command register_ppl(CLI::App& app) {
  auto* cmd = app.add_subcommand("ppl", "Perplexity with a budgeted KV cache: every policy x budget (x weighting) in one sweep");
  static std::string model_dir, out, max_memory;
  static std::vector<std::string> texts, ids;
  static int64_t batch = 0, max_tokens = 0;
  static bool force = false, resume = false;
  static SweepSettings settings;
  static RuntimeOptions rt;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  add_document_options(cmd, texts, ids);
  cmd->add_option("-o,--out", out, "results .h5 (CSV and Markdown tables are written beside it)")->required();
  cmd->add_option("--max-tokens", max_tokens, "truncate each document to N tokens (0 = all)")->check(at_least(0));
  add_setting_options(cmd, settings);
  cmd->add_option("--batch", batch,
                  "runs decoded together in one forward step (default: all runs up to 32, within --max-memory); "
                  "per-token results are identical for every batch size on CPU in float32")
      ->check(at_least(1));
  cmd->add_option("--max-memory", max_memory, "memory the sweep may use, e.g. 8G (default: 90% of the free memory)")->check(non_empty());
  cmd->add_flag("--resume", resume,
                "continue an interrupted sweep from the runs it finished (OUT.resume/, one file per run), reusing those with the same key");
  cmd->add_flag("--force", force, "overwrite existing outputs");
  add_runtime_options(cmd, rt);
  cmd->footer("Policies: " + known_policies_text() + ". Merge weightings: " + known_merge_weightings() + ".");
  return {cmd,
          [cmd] {
            const cluster::Info& me = cluster::info();
            const bool leader = me.rank == 0;  // plans the hand-out, reads the resume file, writes every output
            const std::vector<std::string> given = given_settings(cmd, settings);
            const std::vector<std::string> inputs = input_files(model_dir, texts, ids);
            std::optional<AtomicOutput> output;
            const std::string out_path = out;
            const ResumeJournal journal(out);
            std::string csv_path, md_path;
            if (leader) {
              refuse_output_over_inputs(out, inputs);
              for (const std::string& o : journal.paths()) refuse_output_over_inputs(o, inputs);
              output.emplace(out, force);
              csv_path = sidecar_path(out, ".csv", force);
              md_path = sidecar_path(out, ".md", force);
              refuse_output_over_inputs(csv_path, inputs);
              refuse_output_over_inputs(md_path, inputs);
            }
            const LlamaModel model = load_model(model_dir, rt);
            const ModelConfig& c = model.config();

            std::vector<std::string> sources;
            const auto docs = read_documents(model_dir, c, texts, ids, max_tokens, &sources);
            std::vector<SweepDocument> documents;
            for (size_t d = 0; d < docs.size(); ++d) documents.push_back(SweepDocument{docs[d], sources[d]});
            const SweepPlan plan = plan_sweep(settings, documents, static_cast<int>(c.num_layers), c.max_position_embeddings, given);
            if (leader) {
              std::fprintf(stderr, "ppl: %zu runs over %zu documents, %lld tokens to score\nppl: settings:", plan.runs.size(), docs.size(),
                           static_cast<long long>(plan.tokens_to_score));
              settings.for_each([](const auto& value, const SettingInfo& info) {
                std::ostringstream v;
                v << value;
                std::fprintf(stderr, " %s=%s", info.name, v.str().empty() ? "\"\"" : v.str().c_str());
              });
              std::fprintf(stderr, "\n");
            }
            // Every rank indexes the same runs; the ranks' plans are compared by their keys.
            std::vector<SweepRun> all_runs;
            std::string plan_id;
            for (const PlannedRun& pr : plan.runs) {
              all_runs.push_back(SweepRun{&docs[pr.document], &plan.windows[pr.document], pr.config});
              plan_id += pr.key + "\n";
            }

            PplProvenance prov{model_dir, command_line(), settings, sources};
            prov.settings.stride = plan.stride;
            std::vector<PplRun> finished;
            if (leader) {  // the other ranks are handed only runs rank 0 has not finished
              const bool left = journal.has_runs();
              if (resume && left) {
                finished = journal.runs_for(prov);
              } else if (resume) {
                std::fprintf(stderr, "ppl: --resume: no finished runs in %s, starting from the beginning\n", journal.directory().c_str());
              } else if (left && !force) {
                fail(journal.directory(), ": an interrupted sweep left its finished runs here; pass --resume to continue it or --force to start over");
              } else if (left) {
                journal.clear();  // --force: this sweep starts over
              }
            }
            std::vector<std::optional<PplRun>> results(plan.runs.size());
            int64_t done = 0;
            size_t reused = 0;
            std::vector<size_t> todo;
            std::vector<SweepRun> pending;  // for the memory estimate
            for (size_t j = 0; j < plan.runs.size(); ++j) {
              const PlannedRun& pr = plan.runs[j];
              const auto previous = std::find_if(finished.begin(), finished.end(), [&](const PplRun& r) { return r.key == pr.key; });
              if (previous != finished.end()) {
                done += static_cast<int64_t>(previous->nll.size());
                results[j] = *previous;
                ++reused;
                continue;
              }
              todo.push_back(j);
              pending.push_back(all_runs[j]);
            }
            if (resume && !finished.empty()) {
              std::fprintf(stderr, "ppl: resuming: %zu of %zu runs already done%s\n", reused, plan.runs.size(),
                           reused < finished.size() ? concat(" (", finished.size() - reused, " finished runs of other inputs or settings ignored)").c_str() : "");
            }
            const int64_t batch_used = choose_batch(model, pending, batch, max_memory);
            prov.batch = batch_used;
            const auto finished_runs = [&] {
              std::vector<PplRun> runs;
              for (const auto& r : results)
                if (r) runs.push_back(*r);
              return runs;
            };
            Progress progress("ppl", plan.tokens_to_score);
            const int64_t lanes = std::max<int64_t>(1, std::min<int64_t>(batch_used, static_cast<int64_t>(todo.size())));
            const std::string label = me.size > 1 ? concat(todo.size(), " runs, ", me.size, " ranks x ", lanes, " at a time")
                                                  : concat(todo.size(), " runs, ", lanes, " at a time");
            DistributedSweepCallbacks callbacks;
            callbacks.on_tokens = [&](int64_t n) {
              done += n;
              progress.update(done, label);
            };
            callbacks.on_done = [&](size_t j, RunOutput&& r) {
              const PlannedRun& pr = plan.runs[j];
              results[j] = to_ppl_run(pr, sources[pr.document], std::move(r));
              // Finished runs are saved as each one ends, so an interrupted sweep can resume.
              journal.record(*results[j], prov, c.raw_json);
            };
            run_distributed_sweep(model, all_runs, longest_first(all_runs, todo), batch_used, plan_id, callbacks);
            if (!leader) return 0;
            const std::vector<PplRun> runs = finished_runs();
            progress.finish();
            const auto rows = summarise(runs, bootstrap_options(settings));
            const std::string caption =
                concat("Perplexity of ", model_dir, " on ", docs.size(), " document(s), protocol ", settings.protocol,
                       settings.protocol == "stream" ? "" : concat(" (window ", settings.window, ", stride ", plan.stride, ")"),
                       ", positions ", settings.positions, ", sinks ", settings.sinks, ".");
            const std::string md = markdown_table(rows, caption);
            std::printf("%s", md.c_str());
            write_ppl_results(output->temp_path().string(), runs, prov, c.raw_json, &rows);
            output->commit();
            journal.clear();
            write_text_file(csv_path, csv_table(rows));
            write_text_file(md_path, md);
            std::fprintf(stderr, "wrote %s, %s, %s\n", out_path.c_str(), csv_path.c_str(), md_path.c_str());
            return 0;
          },
          /*distributed=*/true};
}

}  // namespace kvscope::tools
