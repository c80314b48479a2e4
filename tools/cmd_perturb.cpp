#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>

#include "commands.h"
#include "common.h"
#include "model_runtime.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/selection.h"
#include "dist/cluster.h"
#include "dist/work_queue.h"
#include "eval/perturb.h"
#include "eval/perturb_wire.h"
#include "eval/sweep_plan.h"
#include "io/atomic_output.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope::tools {
namespace {

struct Summary {
  std::string variant;
  double mean_cos, worst_step_cos, mean_rel, mean_kl, mean_cos_attention_dropped, mean_cos_attention_added;
};

// Mean over documents of the per-step mean over layers and heads: [steps].
std::vector<double> per_step(const std::vector<PerturbDocumentResult>& docs, size_t v,
                             std::vector<double> PerturbVariantResult::*field, int64_t steps, std::vector<double>* spread) {
  std::vector<double> mean(steps, 0.0), sq(steps, 0.0);
  for (const auto& d : docs) {
    const auto& x = d.variants[v].*field;
    const size_t width = x.size() / steps;
    for (int64_t s = 0; s < steps; ++s) {
      double m = 0;
      for (size_t k = 0; k < width; ++k) m += x[s * width + k];
      m /= static_cast<double>(width);
      mean[s] += m;
      sq[s] += m * m;
    }
  }
  const double n = static_cast<double>(docs.size());
  for (int64_t s = 0; s < steps; ++s) {
    mean[s] /= n;
    if (spread) spread->push_back(std::sqrt(std::max(0.0, sq[s] / n - mean[s] * mean[s])));
  }
  return mean;
}

void write_vec(const h5::Group& g, const std::string& name, const std::vector<double>& v, const std::vector<int64_t>& shape,
               const std::string& dims) {
  auto d = g.create_dataset(name, shape, h5::Stored::Float64, dims);
  if (!v.empty()) d.write_block(std::vector<int64_t>(shape.size(), 0), shape, v.data());
}

}  // namespace

constexpr int64_t kMaxPerturbSteps = int64_t{1} << 40;

Command register_perturb(CLI::App& app) {
  auto* cmd = app.add_subcommand("perturb", "How much one WeightedKV merge (per weighting) or eviction disturbs later attention");
  static std::string model_dir, out, variants = "avg-attention,acc-attention,uniform,current-softmax,evict", layers = "all",
                                     heads = "all", receiver = "right", positions = "original";
  static std::vector<std::string> texts, ids;
  static int64_t at = 100, steps = 800, sinks = 4;
  static bool force = false;
  static RuntimeOptions rt;
  cmd->add_option("MODEL_DIR", model_dir, "Hugging Face model directory")->required();
  add_document_options(cmd, texts, ids);
  cmd->add_option("-o,--out", out, "output .h5 (a CSV summary is written beside it)")->required();
  // Bounded so that --at + --steps cannot overflow before it is checked against the document.
  cmd->add_option("--at", at, "decode step at which the merge happens")->capture_default_str()->check(at_least(2, kMaxPerturbSteps));
  cmd->add_option("--steps", steps, "steps to follow after the merge")->capture_default_str()->check(at_least(1, kMaxPerturbSteps));
  cmd->add_option("--weighting", variants, "comma-separated merge weightings, plus evict (drop the value) and none (control)")
      ->capture_default_str();
  cmd->add_option("--layers", layers, "layers to merge in and record, e.g. 0-3")->capture_default_str();
  cmd->add_option("--heads", heads, "KV heads to merge in, e.g. 0,1")->capture_default_str();
  cmd->add_option("--sinks", sinks, "leading tokens never merged")->capture_default_str()->check(at_least(0, kMaxPerturbSteps));
  cmd->add_option("--receiver", receiver, "right (paper), left, similar")->capture_default_str();
  cmd->add_option("--positions", positions, "original or in-cache")->capture_default_str()->check(CLI::IsMember({"original", "in-cache"}));
  cmd->add_flag("--force", force, "overwrite existing outputs");
  add_runtime_options(cmd, rt);
  return {cmd,
          [] {
            const cluster::Info& me = cluster::info();
            const bool leader = me.rank == 0;  // hands out the documents and writes the outputs
            const std::vector<std::string> inputs = input_files(model_dir, texts, ids);
            std::optional<AtomicOutput> output;
            std::string csv_path;
            if (leader) {
              refuse_output_over_inputs(out, inputs);
              output.emplace(out, force);
              csv_path = sidecar_path(out, ".csv", force);
              refuse_output_over_inputs(csv_path, inputs);
            }
            const LlamaModel model = load_model(model_dir, rt);
            const ModelConfig& c = model.config();
            PerturbOptions o;
            o.at = at;
            o.steps = steps;
            o.variants.clear();
            for (const std::string& v : split_setting_list(variants, "weighting")) {
              if (v != "evict" && v != "none") make_merge_weighting(v);  // unknown names fail here, listing the known ones
              o.variants.push_back(v);
            }
            o.layers = parse_selection(layers, static_cast<int>(c.num_layers), "layer", "--layers");
            o.kv_heads = parse_selection(heads, static_cast<int>(c.num_kv_heads), "KV head", "--heads");
            o.sinks = sinks;
            o.receiver = parse_merge_receiver(receiver);
            o.positions = positions == "original" ? PositionMode::Original : PositionMode::InCache;
            std::vector<std::string> sources;
            const auto docs = read_documents(model_dir, c, texts, ids, at + steps, &sources);
            Progress progress("perturb", static_cast<int64_t>(docs.size()) * steps, "step");
            // Documents are independent: under MPI they are spread over the ranks (one at a time,
            // as a rank is free) and gathered here; with one process this is a loop over them.
            std::vector<std::optional<PerturbDocumentResult>> gathered(docs.size());
            int64_t steps_gathered = 0;
            bool announced = false;
            std::vector<size_t> order(docs.size());
            std::string plan_id = concat(at, ";", steps, ";", variants, ";", layers, ";", heads, ";", sinks, ";", receiver, ";", positions);
            for (size_t d = 0; d < docs.size(); ++d) {
              order[d] = d;
              plan_id += ";" + hash_ids(docs[d]);
            }
            cluster::farm_tasks(
                order, plan_id,
                [&](size_t d, const std::function<void()>& poll) {
                  return encode_perturb_result(run_perturbation(model, docs[d], o, [&](int64_t s) {
                    // Said once the first step is done, so a refused input prints only its error, and
                    // before the first progress line (10 s in when stderr is not a terminal).
                    if (leader && !announced && s == 1) {
                      announced = true;
                      std::fprintf(stderr, "perturb: %zu document(s), merges at step %lld, %lld steps after, %zu variants%s\n", docs.size(),
                                   static_cast<long long>(at), static_cast<long long>(steps), o.variants.size(),
                                   me.size > 1 ? concat(", ", me.size, " ranks").c_str() : "");
                    }
                    if (leader) progress.update(steps_gathered + s);
                    poll();
                  }));
                },
                [&](size_t d, std::string&& bytes) {
                  gathered[d] = decode_perturb_result(bytes);
                  steps_gathered += steps;
                  progress.update(steps_gathered);
                });
            if (!leader) return 0;
            progress.finish();
            std::vector<PerturbDocumentResult> results;
            double decode_seconds = 0, total_seconds = 0;
            for (auto& r : gathered) {
              results.push_back(std::move(*r));
              decode_seconds += results.back().decode_seconds;
              total_seconds += results.back().total_seconds;
            }

            const int64_t L = static_cast<int64_t>(o.layers.size()), H = c.num_heads, KV = c.num_kv_heads;
            std::vector<Summary> summary;
            {
              h5::File file = h5::File::create(output->temp_path().string());
              const h5::Group root = file.root();
              write_provenance(root, kPerturbSchemaName, kPerturbSchemaVersion, command_line());
              root.set_attr("model_path", model_dir);
              root.set_attr("model_config", c.raw_json);
              root.set_attr("at", at);
              root.set_attr("steps", steps);
              root.set_attr("variants", variants);
              std::string ls, hs;
              for (int l : o.layers) ls += (ls.empty() ? "" : ",") + std::to_string(l);
              for (int h : o.kv_heads) hs += (hs.empty() ? "" : ",") + std::to_string(h);
              root.set_attr("layers", ls);
              root.set_attr("kv_heads", hs);
              root.set_attr("sinks", sinks);
              root.set_attr("receiver", receiver);
              root.set_attr("positions", positions);
              root.set_attr("num_heads", H);
              root.set_attr("num_kv_heads", KV);
              root.set_attr("num_documents", static_cast<int64_t>(docs.size()));
              std::string src;
              for (const auto& s : sources) src += (src.empty() ? "" : "\n") + s;
              root.set_attr("sources", src);
              root.set_attr("seconds_decode", decode_seconds);
              root.set_attr("seconds_total", total_seconds);
              const h5::Group dg = root.create_group("documents");
              for (size_t d = 0; d < results.size(); ++d) {
                const h5::Group g = dg.create_group(std::to_string(d));
                for (const auto& r : results[d].variants) {
                  const h5::Group vg = g.create_group(r.name);
                  write_vec(vg, "cos_output", r.cos_output, {steps, L, H}, "step,layer,head");
                  write_vec(vg, "rel_output", r.rel_output, {steps, L, H}, "step,layer,head");
                  write_vec(vg, "cos_attention_dropped", r.cos_attention_dropped, {steps, L, H}, "step,layer,head");
                  write_vec(vg, "cos_attention_added", r.cos_attention_added, {steps, L, H}, "step,layer,head");
                  write_vec(vg, "kl", r.kl, {steps}, "step");
                  write_vec(vg, "weights", r.weights, {L, KV}, "layer,kv_head");
                  auto m = vg.create_dataset("merged_positions", {L, KV, 2}, h5::Stored::Int64, "layer,kv_head,dropped_receiver");
                  m.write_block({0, 0, 0}, {L, KV, 2}, r.merged.data());
                }
              }
              const h5::Group ag = root.create_group("aggregate");
              for (size_t v = 0; v < o.variants.size(); ++v) {
                const h5::Group g = ag.create_group(o.variants[v]);
                std::vector<double> cos_sd, kl_sd;
                const auto cos = per_step(results, v, &PerturbVariantResult::cos_output, steps, &cos_sd);
                const auto rel = per_step(results, v, &PerturbVariantResult::rel_output, steps, nullptr);
                const auto cad = per_step(results, v, &PerturbVariantResult::cos_attention_dropped, steps, nullptr);
                const auto caa = per_step(results, v, &PerturbVariantResult::cos_attention_added, steps, nullptr);
                const auto kl = per_step(results, v, &PerturbVariantResult::kl, steps, &kl_sd);
                write_vec(g, "cos_output_mean", cos, {steps}, "step");
                write_vec(g, "cos_output_std", cos_sd, {steps}, "step");
                write_vec(g, "rel_output_mean", rel, {steps}, "step");
                write_vec(g, "cos_attention_dropped_mean", cad, {steps}, "step");
                write_vec(g, "cos_attention_added_mean", caa, {steps}, "step");
                write_vec(g, "kl_mean", kl, {steps}, "step");
                write_vec(g, "kl_std", kl_sd, {steps}, "step");
                auto avg = [](const std::vector<double>& x) { double s = 0; for (double y : x) s += y; return s / x.size(); };
                summary.push_back(Summary{o.variants[v], avg(cos), *std::min_element(cos.begin(), cos.end()), avg(rel), avg(kl), avg(cad), avg(caa)});
              }
              mark_complete(root);
              file.flush();
              file.close();
            }
            output->commit();
            std::ostringstream table, csv;
            table << "| variant | mean cos(output) | worst step cos | mean rel. L2 | mean KL | cos(attn, dropped) | cos(attn, added) |\n"
                  << "|---|---|---|---|---|---|---|\n";
            csv << "variant,mean_cos_output,worst_step_cos_output,mean_rel_l2_output,mean_kl,mean_cos_attention_dropped,mean_cos_attention_added\n";
            char buf[512];
            for (const auto& s : summary) {
              std::snprintf(buf, sizeof(buf), "| %s | %.6f | %.6f | %.3e | %.3e | %.6f | %.6f |\n", s.variant.c_str(), s.mean_cos,
                            s.worst_step_cos, s.mean_rel, s.mean_kl, s.mean_cos_attention_dropped, s.mean_cos_attention_added);
              table << buf;
              std::snprintf(buf, sizeof(buf), "%s,%.9f,%.9f,%.9e,%.9e,%.9f,%.9f\n", s.variant.c_str(), s.mean_cos, s.worst_step_cos,
                            s.mean_rel, s.mean_kl, s.mean_cos_attention_dropped, s.mean_cos_attention_added);
              csv << buf;
            }
            std::printf("One merge per (layer, KV head) at step %lld, followed for %lld steps over %zu document(s):\n\n%s",
                        static_cast<long long>(at), static_cast<long long>(steps), docs.size(), table.str().c_str());
            std::printf("\ntime: %.1f s in all; %.1f s decoding the full run and %zu perturbed runs in one batch (%.2f ms per step)\n",
                        total_seconds, decode_seconds, o.variants.size(),
                        1e3 * decode_seconds / static_cast<double>(std::max<int64_t>(1, steps * static_cast<int64_t>(docs.size()))));
            write_text_file(csv_path, csv.str());
            std::fprintf(stderr, "wrote %s and %s\n", out.c_str(), csv_path.c_str());
            return 0;
          },
          /*distributed=*/true};
}

}  // namespace kvscope::tools
