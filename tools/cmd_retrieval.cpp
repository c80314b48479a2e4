// kvscope passkey and kvscope needle: retrieval under a compressed cache. The two differ only
// in how a prompt is built (eval/retrieval_prompt.h); the grid, the cache settings, the
// runs and the outputs are shared.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>

#include "cache/merge_weighting.h"
#include "cache/policy_registry.h"
#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/option_values.h"
#include "core/progress.h"
#include "eval/retrieval.h"
#include "eval/retrieval_prompt.h"
#include "eval/retrieval_results.h"
#include "eval/sweep_plan.h"
#include "io/atomic_output.h"
#include "io/input_file.h"
#include "model/tokenizer.h"
#include "settings_cli.h"

namespace kvscope::tools {
namespace {

// The cache settings of `ppl` that apply to one prompt; the protocol options do not.
const std::vector<std::string> kCacheSettings = {"policy", "budget", "weighting", "receiver", "neighbour-in-middle", "sinks", "recent",
                                                 "seed", "skip-layers", "cam-merge", "positions", "aggregation", "prefill-chunk"};

struct RetrievalOptions {
  std::string model_dir, out;
  std::string lengths = "512,1024,2048";
  std::string depths = "0,0.25,0.5,0.75,1";
  std::string key_seeds = "0,1";
  std::string compress = "prefill";
  int64_t digits = 5;
  bool force = false;
  SweepSettings settings;
  RuntimeOptions runtime;
  // needle only
  std::string haystack, needle_name = "Elinor";
};

using PromptBuilder = std::function<RetrievalPrompt(const Tokenizer&, const PromptSpec&)>;

int run_retrieval_sweep(CLI::App* cmd, const std::string& task, RetrievalOptions& o, const PromptBuilder& build) {
  const std::vector<int64_t> lengths =
      distinct_values<int64_t>(o.lengths, "--lengths", [](const std::string& s) { return parse_whole(s, "--lengths", 1, 1 << 24); });
  const std::vector<double> depths =
      distinct_values<double>(o.depths, "--depths", [](const std::string& s) { return parse_real(s, "--depths", 0.0, 1.0); });
  const std::vector<int64_t> seeds = distinct_values<int64_t>(
      o.key_seeds, "--key-seeds", [](const std::string& s) { return parse_whole(s, "--key-seeds", 0); });
  const CompressAt at = parse_compress_at(o.compress);
  std::vector<std::string> inputs = input_files(o.model_dir, {}, {});
  if (!o.haystack.empty()) inputs.push_back(o.haystack);
  refuse_output_over_inputs(o.out, inputs);
  AtomicOutput output(o.out, o.force);
  const std::string md_path = sidecar_path(o.out, ".md", o.force);
  refuse_output_over_inputs(md_path, inputs);

  const LlamaModel model = load_model(o.model_dir, o.runtime);
  const ModelConfig& c = model.config();
  const auto tokenizer = Tokenizer::load(o.model_dir, c);
  // A prompt longer than the context would be attended at positions the model never saw
  // (in prefill, and by the full-cache reference), so lengths stay within it.
  for (int64_t l : lengths) {
    if (l > c.max_position_embeddings) {
      fail("--lengths ", l, ": beyond the model's context of ", c.max_position_embeddings, " tokens (a length counts the prompt, the answer and ",
           kTokensPastAnswer, " tokens past it)");
    }
  }
  struct Prompt {
    int64_t length;
    double depth;
    int64_t seed;
    RetrievalPrompt prompt;
  };
  std::vector<Prompt> prompts;
  std::vector<SweepDocument> documents;
  for (int64_t l : lengths)
    for (double d : depths)
      for (int64_t s : seeds) {
        PromptSpec spec;
        spec.length = l;
        spec.depth = d;
        spec.seed = static_cast<uint64_t>(s);
        spec.digits = static_cast<int>(o.digits);
        try {
          prompts.push_back(Prompt{l, d, s, build(*tokenizer, spec)});
        } catch (const Error& e) {
          fail("--lengths ", l, " --depths ", d, ": ", e.what());
        }
        documents.push_back(SweepDocument{prompts.back().prompt.ids, concat(task, " length ", l, " depth ", d, " seed ", s)});
      }
  const SweepPlan plan = plan_sweep(o.settings, documents, static_cast<int>(c.num_layers), c.max_position_embeddings,
                                    given_settings(cmd, o.settings, kCacheSettings));
  std::fprintf(stderr, "%s: %zu prompts x %zu cache configurations = %zu cells, compress at %s\n", task.c_str(), prompts.size(),
               plan.runs.size() / std::max<size_t>(1, prompts.size()), plan.runs.size(), o.compress.c_str());

  std::vector<RetrievalCell> cells(plan.runs.size());
  Progress progress(task, static_cast<int64_t>(plan.runs.size()), "cells");
  const std::vector<int64_t> stop = c.eos_token_id >= 0 ? std::vector<int64_t>{c.eos_token_id} : std::vector<int64_t>{};
  int64_t done = 0;
  // Prompt by prompt: with --compress prefill every cell of a prompt starts from one prefill.
  for (size_t d = 0; d < prompts.size(); ++d) {
    const Prompt& p = prompts[d];
    std::optional<PrefilledPrompt> prefilled;
    for (size_t j = 0; j < plan.runs.size(); ++j) {
      const PlannedRun& run = plan.runs[j];
      if (run.document != d) continue;
      if (at == CompressAt::Prefill && !prefilled) prefilled = prefill_prompt(model, p.prompt.ids, run.config);
      const int64_t new_tokens = static_cast<int64_t>(p.prompt.answer_ids.size()) + kTokensPastAnswer;
      const RetrievalOutcome r =
          run_retrieval(model, p.prompt.ids, p.prompt.answer_ids, run.config, at, new_tokens, stop, prefilled ? &*prefilled : nullptr);
      RetrievalCell& cell = cells[j];
      cell.length = p.length;
      cell.prompt_tokens = static_cast<int64_t>(p.prompt.ids.size());
      cell.depth = p.depth;
      cell.needle_depth = p.prompt.depth;
      cell.key_seed = p.seed;
      cell.answer = p.prompt.answer;
      cell.policy = run.config.policy;
      cell.budget_label = run.budget_label;
      cell.budget = r.budget;
      cell.weighting = run.weighting;
      cell.receiver = run.receiver;
      cell.generated_ids = r.generated;
      cell.generated = tokenizer->decode(r.generated);
      cell.exact = answer_matches(cell.generated, cell.answer);
      cell.answer_nll = r.answer_nll;
      cell.cache_after_prompt = r.cache_after_prompt;
      cell.seconds = r.seconds;
      progress.update(++done);
    }
  }
  progress.finish();

  const auto rows = summarise_retrieval(cells);
  const std::string caption = concat(task == "passkey" ? "Passkey" : "Needle", " retrieval with ", o.model_dir, ": exact match over ",
                                     prompts.size(), " prompts (lengths ", o.lengths, "; depths ", o.depths, "; key seeds ", o.key_seeds,
                                     "), cache compressed at ", o.compress, ", positions ", o.settings.positions, ".");
  const std::string md = retrieval_markdown(rows, caption);
  std::printf("%s", md.c_str());
  RetrievalProvenance prov;
  prov.task = task;
  prov.model_path = o.model_dir;
  prov.command_line = command_line();
  prov.compress = o.compress;
  prov.haystack = o.haystack;
  prov.needle_name = task == "needle" ? o.needle_name : "";
  prov.digits = o.digits;
  prov.settings = {{"lengths", o.lengths}, {"depths", o.depths}, {"key_seeds", o.key_seeds}};
  o.settings.for_each([&](const auto& value, const SettingInfo& info) {
    if (!exposed(kCacheSettings, info.name)) return;
    std::ostringstream v;
    v << value;
    prov.settings.emplace_back(info.name, v.str());
  });
  write_retrieval_results(output.temp_path().string(), cells, prov, c.raw_json);
  output.commit();
  write_text_file(md_path, md);
  std::fprintf(stderr, "wrote %s, %s\n", o.out.c_str(), md_path.c_str());
  return 0;
}

CLI::App* add_common_options(CLI::App& app, const char* name, const char* description, RetrievalOptions& o) {
  auto* cmd = app.add_subcommand(name, description);
  cmd->add_option("MODEL_DIR", o.model_dir, "Hugging Face model directory")->required();
  cmd->add_option("-o,--out", o.out, "results .h5 (a Markdown table is written beside it)")->required();
  cmd->add_option("--lengths", o.lengths, "comma-separated prompt lengths in tokens")->capture_default_str()->check(non_empty());
  cmd->add_option("--depths", o.depths, "comma-separated depths of the key in the prompt, 0 (start) to 1 (end)")
      ->capture_default_str()
      ->check(non_empty());
  cmd->add_option("--key-seeds", o.key_seeds, "comma-separated seeds, one random key (prompt) per seed and cell")
      ->capture_default_str()
      ->check(non_empty());
  cmd->add_option("--compress", o.compress,
                  "prefill: the whole prompt, then one cut to the budget by the policy's scores; decode: token by token, as ppl")
      ->capture_default_str()
      ->check(CLI::IsMember({"prefill", "decode"}));
  o.settings.budget = "0.5,0.1";
  add_setting_options(cmd, o.settings, kCacheSettings);
  cmd->add_flag("--force", o.force, "overwrite existing outputs");
  add_runtime_options(cmd, o.runtime);
  cmd->footer("Policies: " + known_policies_text() + ". Merge weightings: " + known_merge_weightings() +
              ". Budgets given as ratios resolve against each prompt's length.");
  return cmd;
}

}  // namespace

Command register_passkey(CLI::App& app) {
  static RetrievalOptions o;
  auto* cmd = add_common_options(app, "passkey",
                                 "Passkey retrieval under a compressed cache: the key hidden in filler at each length and depth, "
                                 "answered greedily and scored teacher-forced",
                                 o);
  cmd->add_option("--digits", o.digits, "digits of each key")->capture_default_str()->check(at_least(1, 18));
  return {cmd, [cmd] {
            return run_retrieval_sweep(cmd, "passkey", o, [](const Tokenizer& t, const PromptSpec& s) { return passkey_prompt(t, s); });
          }};
}

Command register_needle(CLI::App& app) {
  static RetrievalOptions o;
  o.digits = 4;
  auto* cmd = add_common_options(app, "needle",
                                 "Needle in a haystack under a compressed cache: a sentence with a number placed in real text "
                                 "at each length and depth, then a question",
                                 o);
  cmd->add_option("--haystack", o.haystack, "text file the needle is hidden in")->required()->check(non_empty());
  cmd->add_option("--needle-name", o.needle_name, "the name in \"The special magic number of NAME is N.\"")
      ->capture_default_str()
      ->check(non_empty());
  cmd->add_option("--digits", o.digits, "digits of each magic number")->capture_default_str()->check(at_least(1, 18));
  return {cmd, [cmd] {
            check_needle_name(o.needle_name, "--needle-name");  // before the model loads
            const std::string haystack = read_text_file(o.haystack);
            check_utf8_text(haystack, o.haystack);
            if (haystack.find_first_not_of(" \t\r\n\f\v") == std::string::npos) fail("--haystack ", o.haystack, ": holds no words");
            return run_retrieval_sweep(cmd, "needle", o, [&haystack](const Tokenizer& t, const PromptSpec& s) {
              return needle_prompt(t, haystack, o.needle_name, s);
            });
          }};
}

}  // namespace kvscope::tools
