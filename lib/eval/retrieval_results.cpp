#include "eval/retrieval_results.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope {

double RetrievalCell::answer_nll_sum() const { return std::accumulate(answer_nll.begin(), answer_nll.end(), 0.0); }

std::vector<RetrievalRow> summarise_retrieval(const std::vector<RetrievalCell>& cells) {
  std::vector<int64_t> lengths;
  for (const RetrievalCell& c : cells) lengths.push_back(c.length);
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  std::vector<RetrievalRow> rows;
  std::map<std::string, size_t> index;
  for (const RetrievalCell& c : cells) {
    const std::string key = c.policy + "|" + c.budget_label + "|" + c.weighting;
    if (!index.count(key)) {
      index[key] = rows.size();
      RetrievalRow r;
      r.policy = c.policy;
      r.budget_label = c.budget_label;
      r.weighting = c.weighting;
      r.lengths = lengths;
      r.cells_at.assign(lengths.size(), 0);
      r.correct_at.assign(lengths.size(), 0);
      rows.push_back(r);
    }
    RetrievalRow& r = rows[index[key]];
    const size_t at = static_cast<size_t>(std::lower_bound(lengths.begin(), lengths.end(), c.length) - lengths.begin());
    ++r.cells;
    ++r.cells_at[at];
    r.correct += c.exact;
    r.correct_at[at] += c.exact;
    r.mean_answer_nll += c.answer_nll_sum();
  }
  for (RetrievalRow& r : rows) r.mean_answer_nll /= static_cast<double>(std::max<int64_t>(1, r.cells));
  return rows;
}

std::string retrieval_markdown(const std::vector<RetrievalRow>& rows, const std::string& caption) {
  std::ostringstream o;
  if (!caption.empty()) o << caption << "\n\n";
  o << "| policy | budget | weighting | accuracy |";
  const std::vector<int64_t> lengths = rows.empty() ? std::vector<int64_t>{} : rows.front().lengths;
  for (int64_t l : lengths) o << " at " << l << " |";
  o << " answer NLL | cells |\n|---|---|---|---|";
  for (size_t i = 0; i < lengths.size(); ++i) o << "---|";
  o << "---|---|\n";
  char buf[64];
  for (const RetrievalRow& r : rows) {
    std::snprintf(buf, sizeof(buf), "%.1f%%", 100.0 * r.accuracy());
    o << "| " << r.policy << " | " << r.budget_label << " | " << (r.weighting.empty() ? "-" : r.weighting) << " | " << buf << " |";
    for (size_t i = 0; i < lengths.size(); ++i) {
      if (r.cells_at[i]) std::snprintf(buf, sizeof(buf), "%.0f%%", 100.0 * static_cast<double>(r.correct_at[i]) / static_cast<double>(r.cells_at[i]));
      else std::snprintf(buf, sizeof(buf), "-");
      o << ' ' << buf << " |";
    }
    std::snprintf(buf, sizeof(buf), "%.3f", r.mean_answer_nll);
    o << ' ' << buf << " | " << r.cells << " |\n";
  }
  return o.str();
}

void write_retrieval_results(const std::string& path, const std::vector<RetrievalCell>& cells, const RetrievalProvenance& p,
                             const std::string& model_config_json) {
  h5::File file = h5::File::create(path);
  {
    const h5::Group root = file.root();
    write_provenance(root, kRetrievalSchemaName, kRetrievalSchemaVersion, p.command_line);
    root.set_attr("task", p.task);
    root.set_attr("model_path", p.model_path);
    root.set_attr("model_config", model_config_json);
    root.set_attr("compress", p.compress);
    root.set_attr("haystack", p.haystack);
    root.set_attr("needle_name", p.needle_name);
    root.set_attr("digits", p.digits);
    for (const auto& [name, value] : p.settings) root.set_attr(name, value);
    root.set_attr("num_cells", static_cast<int64_t>(cells.size()));
    const h5::Group group = root.create_group("cells");
    for (size_t i = 0; i < cells.size(); ++i) {
      const RetrievalCell& c = cells[i];
      const h5::Group g = group.create_group(std::to_string(i));
      g.set_attr("length", c.length);
      g.set_attr("prompt_tokens", c.prompt_tokens);
      g.set_attr("depth", c.depth);
      g.set_attr("needle_depth", c.needle_depth);
      g.set_attr("key_seed", c.key_seed);
      g.set_attr("answer", c.answer);
      g.set_attr("policy", c.policy);
      g.set_attr("budget_label", c.budget_label);
      g.set_attr("budget", c.budget);
      g.set_attr("weighting", c.weighting);
      g.set_attr("receiver", c.receiver);
      g.set_attr("generated", c.generated);
      g.set_attr("exact", static_cast<int64_t>(c.exact));
      g.set_attr("answer_nll_sum", c.answer_nll_sum());
      g.set_attr("cache_after_prompt", c.cache_after_prompt);
      g.set_attr("seconds", c.seconds);
      const int64_t n = static_cast<int64_t>(c.answer_nll.size()), m = static_cast<int64_t>(c.generated_ids.size());
      auto nll = g.create_dataset("answer_nll", {n}, h5::Stored::Float64, "answer_token");
      if (n) nll.write_block({0}, {n}, c.answer_nll.data());
      auto gen = g.create_dataset("generated_ids", {m}, h5::Stored::Int64, "generated_token");
      if (m) gen.write_block({0}, {m}, c.generated_ids.data());
    }
    mark_complete(root);
  }
  file.flush();
  file.close();
}

std::vector<RetrievalCell> read_retrieval_results(const std::string& path) {
  h5::File file = h5::File::open_read(path);
  const h5::Group root = file.root();
  check_schema(root, path, kRetrievalSchemaName, kRetrievalSchemaVersion, "re-run kvscope passkey or needle");
  std::vector<RetrievalCell> cells;
  const int64_t n = root.attr_int("num_cells");
  const h5::Group group = root.open_group("cells");
  for (int64_t i = 0; i < n; ++i) {
    const h5::Group g = group.open_group(std::to_string(i));
    RetrievalCell c;
    c.length = g.attr_int("length");
    c.prompt_tokens = g.attr_int("prompt_tokens");
    c.depth = g.attr_double("depth");
    c.needle_depth = g.attr_double("needle_depth");
    c.key_seed = g.attr_int("key_seed");
    c.answer = g.attr_string("answer");
    c.policy = g.attr_string("policy");
    c.budget_label = g.attr_string("budget_label");
    c.budget = g.attr_int("budget");
    c.weighting = g.attr_string("weighting");
    c.receiver = g.attr_string("receiver");
    c.generated = g.attr_string("generated");
    c.exact = g.attr_int("exact") != 0;
    c.cache_after_prompt = g.attr_int("cache_after_prompt");
    c.seconds = g.attr_double("seconds");
    g.open_dataset("answer_nll").read_all(c.answer_nll);
    g.open_dataset("generated_ids").read_all(c.generated_ids);
    cells.push_back(std::move(c));
  }
  return cells;
}

}  // namespace kvscope
