#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/selection.h"
#include "dist/cluster.h"
#include "dist/work_queue.h"
#include "dump/dump_writer.h"
#include "eval/sweep_plan.h"
#include "io/atomic_output.h"
#include "model/tokenizer.h"

namespace kvscope::tools {

Command register_dump(CLI::App& app) {
  auto* cmd = app.add_subcommand("dump", "Write per-layer keys (before/after RoPE), values and attention of documents to HDF5");
  static std::string model_dir, out, layers = "all", attention_layers, heads = "all", attention = "summary", dtype = "float32";
  static std::vector<std::string> texts, ids;
  static int64_t max_tokens = 0, chunk = 0;
  static bool queries = false, force = false;
  static RuntimeOptions rt;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  add_document_options(cmd, texts, ids);
  cmd->add_option("-o,--out", out, "output .h5 file (written atomically)")->required();
  cmd->add_option("--max-tokens", max_tokens, "truncate each document to N tokens (0 = all)")->check(at_least(0));
  cmd->add_option("--layers", layers, "layers to dump, e.g. 0-3,7 or all")->capture_default_str();
  cmd->add_option("--attention-layers", attention_layers, "layers with full attention (default: --layers)")->check(non_empty());
  cmd->add_option("--heads", heads, "query heads with full attention, e.g. 0-3 or all")->capture_default_str();
  cmd->add_option("--attention", attention, "none | summary | full")->capture_default_str()->check(CLI::IsMember({"none", "summary", "full"}));
  cmd->add_flag("--queries", queries, "also store q (after RoPE)");
  cmd->add_option("--store-dtype", dtype, "float32 | float16 for stored tensors")->capture_default_str()->check(CLI::IsMember({"float32", "float16"}));
  cmd->add_option("--chunk", chunk, "prefill chunk (0 = chosen to bound memory)")->check(at_least(0));
  cmd->add_flag("--force", force, "overwrite an existing output file");
  add_runtime_options(cmd, rt);
  return {cmd,
          [] {
            const cluster::Info& me = cluster::info();
            const bool leader = me.rank == 0;  // hands out the documents and writes the dump
            if (texts.empty() && ids.empty()) fail("no input: pass --text FILE... or --ids FILE...");
            std::optional<AtomicOutput> output;
            if (leader) {
              refuse_output_over_inputs(out, input_files(model_dir, texts, ids));
              output.emplace(out, force);  // checks the destination before any work
            }
            const LlamaModel model = load_model(model_dir, rt);
            const ModelConfig& c = model.config();
            DumpOptions o;
            o.layers = parse_selection(layers, static_cast<int>(c.num_layers), "layer", "--layers");
            o.heads = parse_selection(heads, static_cast<int>(c.num_heads), "head", "--heads");
            o.full_attention_layers = attention_layers.empty() ? o.layers : parse_selection(attention_layers, static_cast<int>(c.num_layers), "layer", "--attention-layers");
            for (int l : o.full_attention_layers) {
              if (std::find(o.layers.begin(), o.layers.end(), l) == o.layers.end()) fail("--attention-layers: layer ", l, " is not in --layers");
            }
            o.attention = attention == "none" ? AttentionDump::None : attention == "summary" ? AttentionDump::Summary : AttentionDump::Full;
            o.queries = queries;
            o.float16 = dtype == "float16";
            o.chunk = chunk;
            std::vector<TokenInput> read;
            read_documents(model_dir, c, texts, ids, max_tokens, nullptr, &read);
            std::vector<DumpInput> inputs;
            for (TokenInput& in : read) inputs.push_back(DumpInput{std::move(in.ids), std::move(in.pieces), std::move(in.byte_spans), in.source});
            std::string tokenizer = "none (pre-tokenised ids)";
            if (!texts.empty()) tokenizer = Tokenizer::load(model_dir, c)->description();
            int64_t total = 0;
            for (const auto& in : inputs) total += static_cast<int64_t>(in.ids.size());
            const DumpProvenance provenance{model_dir, tokenizer, command_line()};
            Progress progress("dump", total);
            if (me.size == 1) {
              DumpWriter writer(output->temp_path().string(), model, o, provenance);
              int64_t done_before = 0;
              for (size_t d = 0; d < inputs.size(); ++d) {
                writer.add_document(inputs[d], [&](int64_t done, int64_t) {
                  std::error_code ec;
                  const auto bytes = std::filesystem::file_size(output->temp_path(), ec);
                  progress.update(done_before + done, concat("doc ", d + 1, "/", inputs.size(), ", ", o.layers.size(), " layers, ",
                                                             ec ? 0 : bytes >> 20, " MB written"));
                });
                done_before += static_cast<int64_t>(inputs[d].ids.size());
              }
              writer.finish();
            } else {
              // Each rank dumps the documents it is handed to files of one document each, beside
              // the output (so on the shared file system a multi-node job writes to), and rank 0
              // copies them into the dump in document order. The parts are temporary files: they
              // are removed when their rank ends, also on an interrupt, after the barrier below.
              std::vector<std::unique_ptr<AtomicOutput>> parts;
              std::vector<std::string> part_of(inputs.size());
              int64_t done_gathered = 0;
              std::vector<size_t> order(inputs.size());
              std::string plan_id = concat(layers, ";", attention_layers, ";", heads, ";", attention, ";", queries, ";", dtype);
              for (size_t d = 0; d < inputs.size(); ++d) {
                order[d] = d;
                plan_id += ";" + hash_ids(inputs[d].ids);
              }
              cluster::farm_tasks(
                  order, plan_id,
                  [&](size_t d, const std::function<void()>& poll) {
                    parts.push_back(std::make_unique<AtomicOutput>(concat(out, ".doc", d), true));
                    DumpWriter part(parts.back()->temp_path().string(), model, o, provenance);
                    part.add_document(inputs[d], [&](int64_t done, int64_t) {
                      if (leader) progress.update(done_gathered + done, concat(me.size, " ranks"));
                      poll();
                    });
                    part.finish();
                    return parts.back()->temp_path().string();
                  },
                  [&](size_t d, std::string&& path) {
                    part_of[d] = std::move(path);
                    done_gathered += static_cast<int64_t>(inputs[d].ids.size());
                    progress.update(done_gathered, concat(me.size, " ranks"));
                  });
              if (leader) {
                DumpWriter writer(output->temp_path().string(), model, o, provenance);
                for (const std::string& part : part_of) writer.add_document_from(part);
                writer.finish();
              }
              cluster::barrier();
              if (!leader) return 0;
            }
            progress.finish();
            output->commit();
            std::error_code ec;
            std::printf("wrote %s: %zu document(s), %lld tokens, %zu layers, attention %s, %.1f MB\n", out.c_str(), inputs.size(),
                        static_cast<long long>(total), o.layers.size(), attention.c_str(),
                        std::filesystem::file_size(out, ec) / 1048576.0);
            return 0;
          },
          /*distributed=*/true};
}

}  // namespace kvscope::tools
