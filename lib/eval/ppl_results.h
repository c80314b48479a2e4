#pragma once
// Results of a perplexity sweep: per-token NLL of every run (so they can be re-aggregated),
// the Table I-style summary, and their files (HDF5 schema kvscope.ppl v1, CSV, Markdown).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "eval/paired_bootstrap.h"
#include "eval/sweep_plan.h"

namespace kvscope {

inline constexpr const char* kPplSchemaName = "kvscope.ppl";
inline constexpr int64_t kPplSchemaVersion = 3;

struct PplRun {
  std::string policy, budget_label, weighting, receiver;
  std::string key;         // PlannedRun::key: what --resume matches finished runs by
  int64_t budget = 0;      // resolved for the first window
  int64_t document = 0;
  std::string source;
  int64_t max_cache = 0;
  double seconds = 0.0;
  double policy_seconds = 0.0;
  std::vector<double> nll;
  std::vector<int64_t> token_index;
  // --log-perturbation: one entry per (decision, query head)
  std::vector<int64_t> perturbation_step;
  std::vector<int64_t> perturbation_layer, perturbation_head;
  std::vector<double> perturbation_relative_change, perturbation_cosine;
};

struct PplRow {
  std::string policy, budget_label, weighting;
  int64_t budget = 0, tokens = 0, max_cache = 0;
  double mean_nll = 0, ppl = 0, ppl_low = 0, ppl_high = 0, tokens_per_second = 0;
  double policy_us_per_token = 0;  // the cache's own cost per decoded token
  // Against the full-cache run on the same tokens, pooled over documents (methods §5.1);
  // absent when the sweep has no full run for every document of the row.
  std::optional<PplDifference> paired;
};

// Pools the NLL of all documents of each (policy, budget, weighting), in first-seen order.
// The 95% interval is exp(mean NLL +- 1.96 sd / sqrt(n)), treating tokens as independent
// (they are not, so it is a lower bound on the uncertainty). Each row is also compared with
// the full-cache runs of the same documents, paired token by token.
std::vector<PplRow> summarise(const std::vector<PplRun>& runs, const BootstrapOptions& bootstrap);
// Each run against the full-cache run of its document (absent for the full run itself, and
// where the sweep has none).
std::vector<std::optional<PplDifference>> paired_per_run(const std::vector<PplRun>& runs, const BootstrapOptions& bootstrap);
BootstrapOptions bootstrap_options(const SweepSettings& settings);
std::string markdown_table(const std::vector<PplRow>& rows, const std::string& caption);
std::string csv_table(const std::vector<PplRow>& rows);

struct PplProvenance {
  std::string model_path, command_line;
  SweepSettings settings;  // every setting is written as a root attribute of its own name
  std::vector<std::string> sources;
  int64_t batch = 1;  // runs stepped together; results do not depend on it
};

// `summary`: the table's rows (summarise), written with each run's paired difference from the
// full cache; null for the resume checkpoints, rewritten after every run, which skip that
// bootstrap work.
void write_ppl_results(const std::string& path, const std::vector<PplRun>& runs, const PplProvenance& provenance,
                       const std::string& model_config_json, const std::vector<PplRow>* summary);
// Refuses to resume from a file written with another model or another setting that changes
// numbers, naming the first that differs. (Runs are then matched by key, which also covers
// each document's tokens.)
void check_resumable(const std::string& path, const PplProvenance& now);
// Reads runs back through the schema check (used by --resume and by tests).
std::vector<PplRun> read_ppl_results(const std::string& path);

}  // namespace kvscope
