#pragma once
// Results of a retrieval sweep (HDF5 schema kvscope.retrieval v1, docs/results_schemas.md):
// one record per cell (prompt x policy x budget x weighting) and the accuracy table.
#include <cstdint>
#include <string>
#include <vector>

namespace kvscope {

inline constexpr const char* kRetrievalSchemaName = "kvscope.retrieval";
inline constexpr int64_t kRetrievalSchemaVersion = 1;

struct RetrievalCell {
  int64_t length = 0;         // requested prompt length
  int64_t prompt_tokens = 0;  // actual
  double depth = 0;           // requested
  double needle_depth = 0;    // first token of the key sentence / prompt tokens
  int64_t key_seed = 0;
  std::string answer;         // the expected number
  std::string policy, budget_label, weighting, receiver;
  int64_t budget = 0;
  std::string generated;      // greedy continuation, decoded
  std::vector<int64_t> generated_ids;
  bool exact = false;
  std::vector<double> answer_nll;  // teacher-forced, per answer token
  int64_t cache_after_prompt = 0;
  double seconds = 0;
  double answer_nll_sum() const;
};

struct RetrievalRow {
  std::string policy, budget_label, weighting;
  int64_t cells = 0, correct = 0;
  double mean_answer_nll = 0;
  std::vector<int64_t> lengths;                   // ascending
  std::vector<int64_t> cells_at, correct_at;      // per length
  double accuracy() const { return cells ? static_cast<double>(correct) / static_cast<double>(cells) : 0.0; }
};

// Per (policy, budget, weighting), in first-seen order.
std::vector<RetrievalRow> summarise_retrieval(const std::vector<RetrievalCell>& cells);
std::string retrieval_markdown(const std::vector<RetrievalRow>& rows, const std::string& caption);

struct RetrievalProvenance {
  std::string task;  // passkey or needle
  std::string model_path, command_line, compress;
  std::string haystack;     // needle only
  std::string needle_name;  // needle only
  int64_t digits = 0;
  std::vector<std::pair<std::string, std::string>> settings;  // cache settings as given to the sweep
};

void write_retrieval_results(const std::string& path, const std::vector<RetrievalCell>& cells, const RetrievalProvenance& provenance,
                             const std::string& model_config_json);
std::vector<RetrievalCell> read_retrieval_results(const std::string& path);

}  // namespace kvscope
